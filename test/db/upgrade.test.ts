/**
 * Upgrades, on both databases: each migration applied to a database in the schema before it, full
 * of the rows a real installation has, keeps every row and gives what it adds its defaults; and a
 * server on a database newer than itself refuses to start (real `esnap serve`).
 *
 * Adding migration 0003: give `steps` an entry for it (what it adds to existing rows, the tables it
 * creates) and fill the seed of 0002 if it is empty; the tests below then build the 0002 schema with
 * the real migrations, seed it, and upgrade it. The first test fails until the entry exists.
 * (test/db/migrate.test.ts covers concurrent migration and the refusal at the function level.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { forEachDb, PG_URL, type TestDb } from '../helpers/server.js';
import { runEsnap } from '../helpers/esnap-process.js';
import { openDatabase } from '../../src/db/dialect.js';
import { knownMigrations, migrateToLatest, migrateUpTo } from '../../src/db/migrate.js';
import type { Database } from '../../src/db/schema.js';
import { listBkpDefNames } from '../../src/backups/bkpdef.repository.js';
import { claimSlots, definitionsInProgress, dueDefinitions, slotsOf } from '../../src/scheduler/slot.repository.js';

type AnyDb = Kysely<any>;
type Row = Record<string, unknown>;
/** Ids and names the seeds hand to later seeds and checks. */
type Seeded = Record<string, number | string>;

interface Step {
  /** Inserts, in the schema right after this migration, the rows an installation of that version holds. */
  seed(db: AnyDb, s: Seeded): Promise<void>;
  /** Columns this migration adds to existing tables, with the value existing rows must get. */
  readonly newColumns: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Tables this migration creates, with how many rows an upgrade leaves in them. */
  readonly newTables: Readonly<Record<string, number>>;
  /** Uses the upgraded database through esnap's own queries. */
  verify?(db: Kysely<Database>, s: Seeded): Promise<void>;
}

const T0 = '2026-01-05T10:00:00.000Z';
const T1 = '2026-01-05T11:30:00.000Z';
const PAST = '2026-01-06T00:00:00.000Z';

async function insert(db: AnyDb, table: string, values: Row): Promise<number> {
  const row = (await db.insertInto(table).values(values).returning('id').executeTakeFirstOrThrow()) as { id: number };
  return row.id;
}

const steps: Record<string, Step> = {
  '0001_initial': {
    newColumns: {},
    newTables: {},
    async seed(db, s) {
      const main = await insert(db, 'dc', { name: 'main', alias: 'Main', access: 1, owner_id: null, settings: '{}', created: T0 });
      const admin = await insert(db, 'account', {
        username: 'admin', email: 'admin@example.com', password_hash: null, api_key_hash: 'sha256:aa11', is_super_admin: 1, api_access: 1, is_active: 1, current_dc_id: main, created: T0,
      });
      const alice = await insert(db, 'account', {
        username: 'alice', email: 'alice@example.com', password_hash: 'scrypt$16384$8$1$c2FsdA$aGFzaA', api_key_hash: null, is_super_admin: 0, api_access: 1, is_active: 1, current_dc_id: main, created: T0,
      });
      await insert(db, 'account', {
        username: 'bob', email: 'bob@example.com', password_hash: null, api_key_hash: null, is_super_admin: 0, api_access: 0, is_active: 0, current_dc_id: null, created: T0,
      });
      const lab = await insert(db, 'dc', {
        name: 'lab', alias: 'Lab', access: 3, owner_id: alice, settings: JSON.stringify({ VMS_VM_SNAPSHOT_LIMIT_MANUAL: 5, VMS_VM_SNAPSHOT_DC_SIZE_LIMIT: 1024 }), created: T0,
      });
      await db.insertInto('dc_admin').values({ dc_id: lab, user_id: alice }).execute();
      await db.insertInto('auth_token').values({ key_hash: 'sha256:bb22', user_id: alice, created: T0, expires: '2026-01-06T10:00:00.000Z' }).execute();
      await insert(db, 'login_failure', { key: 'user:bob', time: T1 });
      const node1 = await insert(db, 'node', { hostname: 'node1.example', uuid: '7a1c0c0e-6f3b-4d35-9c3e-1d7a2b9c0a01', status: 2, last_heartbeat: T1, created: T0 });
      const node2 = await insert(db, 'node', { hostname: 'node2.example', uuid: '7a1c0c0e-6f3b-4d35-9c3e-1d7a2b9c0a02', status: 3, last_heartbeat: T0, created: T0 });
      const fileStorage = await insert(db, 'node_storage', {
        node_id: node1, name: 'default', driver: 'file', config: JSON.stringify({ root: '/srv/esnap' }), size: 4_000_000_000_000, size_free: 3_500_000_000_000, created: T0,
      });
      const zfsStorage = await insert(db, 'node_storage', {
        node_id: node2, name: 'zones', driver: 'zfs', config: JSON.stringify({ dataset: 'zones/vms' }), size: null, size_free: null, created: T0,
      });
      const web = 'c0ffee00-0000-4000-8000-000000000001';
      const dbVm = 'c0ffee00-0000-4000-8000-000000000002';
      const vm = (uuid: string, hostname: string, dc: number, owner: number, node: number, extra: Row): Row => ({
        uuid, hostname, alias: hostname.split('.')[0], dc_id: dc, owner_id: owner, node_id: node, brand: 'kvm', status: 1, status_change: T0,
        qmp_socket: null, qga_socket: null, snapshot_limit_manual: null, snapshot_limit_auto: null, snapshot_size_limit: null, snapshot_size_percent_limit: null,
        created: T0, changed: T1, ...extra,
      });
      await db.insertInto('vm').values(vm(web, 'web01.example', main, admin, node1, { status: 2, qmp_socket: '/run/qemu/web01.qmp', qga_socket: '/run/qemu/web01.qga', snapshot_limit_manual: 10 })).execute();
      await db.insertInto('vm').values(vm(dbVm, 'db01.example', lab, alice, node2, { snapshot_size_limit: 2048, snapshot_size_percent_limit: 50 })).execute();
      await insert(db, 'vm_disk', { vm_uuid: web, real_id: 0, storage_id: fileStorage, path: `${web}-disk0`, size_mb: 10240, created: T0 });
      await insert(db, 'vm_disk', { vm_uuid: web, real_id: 1, storage_id: fileStorage, path: `${web}-disk1`, size_mb: 2048, created: T0 });
      await insert(db, 'vm_disk', { vm_uuid: dbVm, real_id: 0, storage_id: zfsStorage, path: 'db01-disk0', size_mb: 51200, created: T0 });
      const define = (uuid: string, disk: number, name: string, extra: Row): Row => ({
        vm_uuid: uuid, disk_real_id: disk, name, desc: '', schedule: '0 3 * * *', retention: 7, active: 1, fsfreeze: 0, tz: 'UTC', catchup: 1,
        retention_days: null, next_run: null, last_run: null, last_success: null, last_error: null, created: T0, changed: T0, ...extra,
      });
      const daily = await insert(db, 'snapshot_define', define(web, 0, 'daily', { desc: 'nightly', fsfreeze: 1, next_run: PAST, last_run: T0, last_success: T0 }));
      await insert(db, 'snapshot_define', define(dbVm, 0, 'hourly', { schedule: '0 * * * *', active: 0, tz: 'Europe/Bratislava', catchup: 0, retention_days: 30, last_error: 'Task did not acquire lock' }));
      const snap = (uuid: string, disk: number, storage: number, name: string, extra: Row): Row => ({
        vm_uuid: uuid, define_id: null, name, type: 2, status: 1, storage_id: storage, size: null, note: '', fsfreeze: 0, pinned: 0, disk_real_id: disk,
        status_change: null, created: T0, changed: T0, ...extra,
      });
      await insert(db, 'snapshot', snap(web, 0, fileStorage, 'before-upgrade', { size: 123_456_789_012, note: 'kernel 6.1 → 6.6', pinned: 1 }));
      await insert(db, 'snapshot', snap(web, 0, fileStorage, 'daily-20260105_030000', { define_id: daily, type: 1, size: 4096, fsfreeze: 1 }));
      await insert(db, 'snapshot', snap(web, 1, fileStorage, 'pending-one', { status: 2, status_change: T1 }));
      await insert(db, 'snapshot', snap(dbVm, 0, zfsStorage, 'lost-one', { status: 4, status_change: T1 }));
      const task = (id: string, extra: Row): Row => ({
        id, type: 'e', kind: 'snapshot_create', user_id: admin, owner_id: admin, dc_id: main, vm_uuid: web, node_id: node1,
        payload: JSON.stringify({ op: 'create', items: [{ storage: 'default', disk: { path: `${web}-disk0` }, id: 'es-1', name: 'before-upgrade' }] }),
        context: JSON.stringify({ snapshotIds: [1] }), node: 'node1.example', apiview: JSON.stringify({ view: 'vm_snapshot', method: 'POST', hostname: 'web01.example' }),
        state: 'SUCCESS', result: JSON.stringify({ returncode: 0, message: 'Snapshot successfully created', detail: '' }), log_msg: 'Create snapshot', log_detail: 'disk_id=1',
        created: T0, started: T0, finished: T1, ...extra,
      });
      await db.insertInto('task').values(task('1e1d1-6f0e9a7c-3f1b-4c55-8a11', {})).execute();
      await db.insertInto('task').values(task('1e1d1-6f0e9a7c-3f1b-4c55-8a12', { state: 'PENDING', result: null, started: null, finished: null, context: JSON.stringify({ snapshotIds: [3] }) })).execute();
      await db.insertInto('task').values(task('1a1d1-6f0e9a7c-3f1b-4c55-8a13', { type: 'a', state: 'FAILURE', result: JSON.stringify({ returncode: 1, message: 'Snapshot error', detail: 'disk busy' }), context: JSON.stringify({ defineId: daily }) })).execute();
      await db.insertInto('task_lock').values({ key: `vm_snapshot vm:${web} disk:1`, task_id: '1e1d1-6f0e9a7c-3f1b-4c55-8a12', created: T1 }).execute();
      const log = (taskId: string, status: string, extra: Row): Row => ({
        time: T1, task_id: taskId, task_type: 'e', status, user_id: admin, username: 'admin', owner_id: admin, dc_id: main, msg: 'Create snapshot', detail: 'disk_id=1',
        object_type: 'vm', object_name: 'web01.example', object_alias: 'web01', object_pk: web, flag: 1, ...extra,
      });
      await insert(db, 'task_log', log('1e1d1-6f0e9a7c-3f1b-4c55-8a11', 'PENDING', { time: T0 }));
      await insert(db, 'task_log', log('1e1d1-6f0e9a7c-3f1b-4c55-8a11', 'SUCCESS', {}));
      await insert(db, 'task_log', log('1a1d1-6f0e9a7c-3f1b-4c55-8a13', 'FAILURE', { task_type: 'a', username: 'system', flag: 2 }));
      Object.assign(s, { daily, web });
    },
  },
  '0002_scheduler': {
    newColumns: {},
    newTables: { schedule_slot: 0 },
    async seed(db, s) {
      const row = (slot: string, state: string, reason: string | null): Row => ({
        define_id: s['daily'], slot, source: 'cron', state, reason, created: slot, changed: slot,
      });
      await db.insertInto('schedule_slot').values(row('2026-01-04T03:00:00.000Z', 'fired', null)).execute();
      await db.insertInto('schedule_slot').values(row('2026-01-05T03:00:00.000Z', 'skipped', 'overlap')).execute();
    },
    async verify(db, s) {
      // The scheduler finds the old definition due and can record a slot of it in the new table.
      const daily = s['daily'] as number;
      const due = await dueDefinitions(db, '2026-01-07T00:00:00.000Z', null, 10);
      expect(due.map((d) => d.name)).toEqual(['daily']);
      const won = await claimSlots(
        db,
        [{ defineId: daily, expectedNextRun: PAST, nextRun: '2026-01-07T03:00:00.000Z', slot: PAST, source: 'catchup', state: 'fired', reason: null }],
        '2026-01-07T00:00:00.000Z',
      );
      expect([...won]).toEqual([daily]);
      expect((await slotsOf(db, daily)).map((r) => [r.slot, r.state])).toContainEqual([PAST, 'fired']);
    },
  },
  '0003_crash_safety': {
    // Disks from before were never checked: they start whole.
    newColumns: { vm_disk: { damaged: null } },
    newTables: {},
    async seed(db) {
      const disk = (await db.selectFrom('vm_disk').select('id').orderBy('id').executeTakeFirstOrThrow()) as { id: number };
      await db.updateTable('vm_disk').set({ damaged: 'image is missing' }).where('id', '=', disk.id).execute();
    },
    async verify(db) {
      const flags = (await db.selectFrom('vm_disk').select('damaged').orderBy('id').execute()).map((r) => r.damaged);
      // Seeded on the newest schema only: then the first disk carries its flag, else none does.
      expect(flags.slice(1).every((f) => f === null)).toBe(true);
      },
    },
  '0004_backups': {
    // Existing nodes are not backup nodes until their agent says so (ESNAP_BACKUP_NODE).
    newColumns: { node: { is_backup: 0 } },
    newTables: { backup_define: 0, backup: 0 },
    async seed(db, s) {
      const node2 = (await db.selectFrom('node').select('id').where('hostname', '=', 'node2.example').executeTakeFirstOrThrow()) as { id: number };
      const zfs = (await db.selectFrom('node_storage').select(['id', 'name']).where('node_id', '=', node2.id).where('driver', '=', 'zfs').executeTakeFirstOrThrow()) as { id: number; name: string };
      const vm = (await db.selectFrom('vm').select(['uuid', 'dc_id']).where('hostname', '=', 'db01.example').executeTakeFirstOrThrow()) as { uuid: string; dc_id: number };
      await db.updateTable('node').set({ is_backup: 1 }).where('id', '=', node2.id).execute();
      const bkpdef = await insert(db, 'backup_define', {
        vm_uuid: vm.uuid, disk_real_id: 0, name: 'nightly', type: 1, node_id: node2.id, storage_id: zfs.id, desc: '', bwlimit: null, schedule: '0 1 * * *',
        retention: 7, active: 1, compression: 0, fsfreeze: 0, tz: 'UTC', next_run: PAST, last_run: null, last_success: null, last_error: null, created: T0, changed: T0,
      });
      await insert(db, 'backup', {
        dc_id: vm.dc_id, vm_uuid: vm.uuid, vm_hostname: 'db01.example', vm_disk_id: 1, disk_real_id: 0, disk_size_mb: 51200, define_id: bkpdef,
        name: 'nightly-20260105_010000', status: 1, type: 1, node_id: node2.id, node_hostname: 'node2.example', storage_id: zfs.id, storage_name: zfs.name,
        storage_driver: 'zfs', source_node_hostname: 'node2.example', source_storage_name: zfs.name, source_storage_driver: 'zfs',
        file_path: 'backup/db01-disk0@is-1', restic_id: null, base_snapshot: 'is-1', checksum: 'ab'.repeat(32), size: 1024, time: 3, note: '', last: 1,
        fsfreeze: 0, task_id: null, status_change: null, created: T1, changed: T1,
      });
      Object.assign(s, { bkpdef, bkpNode: node2.id });
    },
    async verify(db, s) {
      // esnap's own query of the node's definitions works on the upgraded schema.
      const node = s['bkpNode'] as number | undefined;
      const id = node ?? (await db.selectFrom('node').select('id').where('hostname', '=', 'node2.example').executeTakeFirstOrThrow()).id;
      const names = await listBkpDefNames(db, { nodeId: id }, [{ column: 'd.name', desc: false }]);
      expect(names).toEqual(node === undefined ? [] : ['nightly']);
      },
    },
  '0005_libvirt': {
    // Existing VMs and disks are API-registered ones: not libvirt, attached, on their storage.
    newColumns: {
      vm: { libvirt: 0 },
      vm_disk: { libvirt_target: null, libvirt_source: null, detached: 0, unmapped: null },
    },
    newTables: {},
    async seed(db, s) {
      const vm = await db.selectFrom('vm').select(['uuid', 'node_id']).where('uuid', '=', s['web'] as string).executeTakeFirstOrThrow();
      const storage = await db.selectFrom('node_storage').select('id').where('node_id', '=', vm.node_id).executeTakeFirstOrThrow();
      await db.insertInto('vm_disk').values({
        vm_uuid: vm.uuid, real_id: 7, storage_id: storage.id, path: 'libvirt-disk', size_mb: 8, created: T1,
        libvirt_target: 'vdh', libvirt_source: '/srv/esnap/libvirt-disk', detached: 1, unmapped: null,
      }).execute();
    },
  },
  '0006_overview_indexes': {
    // Indexes only: every row stays as it was.
    newColumns: {},
    newTables: {},
    async seed() {},
  },
  '0007_ssh_trust': {
    // Registered nodes have no SSH identity until their agent starts again and sends one.
    newColumns: { node: { ssh_address: null, ssh_host_key: null, ssh_public_key: null } },
    newTables: {},
    async seed(db) {
      await db.updateTable('node').set({ ssh_address: 'esnap@node2.example:22', ssh_host_key: `ssh-ed25519 ${'A'.repeat(68)}` }).where('hostname', '=', 'node2.example').execute();
    },
  },
  '0008_due_index': {
    // An index only: every row stays as it was.
    newColumns: {},
    newTables: {},
    async seed() {},
  },
  '0009_task_define': {
    // Only pending or running creates get their definition from the context (none is seeded with
    // one here: the backfill has its own test below); every other task keeps null.
    newColumns: { task: { define_id: null } },
    newTables: {},
    async seed() {},
  },
  '0010_backup_slots': {
    // Existing backup definitions catch up after downtime, as they did before (Danube's behaviour); no slot history yet.
    newColumns: { backup_define: { catchup: 1 } },
    newTables: { backup_slot: 0 },
    async seed(db) {
      // A later installation: the backup scheduler has fired a slot of the definition.
      const def = await db.selectFrom('backup_define').select('id').executeTakeFirstOrThrow();
      await db.insertInto('backup_slot').values({ define_id: def.id, slot: T1, source: 'cron', state: 'fired', reason: null, created: T1, changed: T1 }).execute();
    },
  },
  '0011_task_open_xid': {
    // Tasks from before have no inserting transaction recorded (the sweep's first pass reads them all).
    newColumns: { task: { open_xid: null } },
    newTables: {},
    async seed() {},
  },
  '0012_snapshot_discard': {
    // A new, empty table: failed creates from before had their discard list in the repair sync's payload.
    newColumns: {},
    newTables: { snapshot_discard: 0 },
    async seed(db, s) {
      // A later installation: a failed create of the VM left a snapshot for the next sync to destroy.
      await db.insertInto('snapshot_discard').values({ vm_uuid: s['web'] as string, disk_path: 'disk0', snapshot: 'es-99', task_id: 'e1-1a2b3c4d-5e6f-7a8b-9c0d', created: T1 }).execute();
    },
  },
};

/** The tables of the connection's schema (PostgreSQL: its search_path) and their columns, in order. */
async function tablesOf(db: AnyDb, kind: TestDb): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (kind === 'sqlite') {
    const tables = await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`.execute(db);
    for (const { name } of tables.rows) {
      const cols = await sql<{ name: string }>`SELECT name FROM pragma_table_info(${name}) ORDER BY cid`.execute(db);
      out.set(name, cols.rows.map((c) => c.name));
    }
  } else {
    const cols = await sql<{ table_name: string; column_name: string }>`
      SELECT table_name, column_name FROM information_schema.columns
      WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`.execute(db);
    for (const c of cols.rows) out.set(c.table_name, [...(out.get(c.table_name) ?? []), c.column_name]);
  }
  return out;
}

/** Every row of `table` with only `columns`, in a stable order. */
async function rowsOf(db: AnyDb, table: string, columns: readonly string[]): Promise<Row[]> {
  const rows = (await db.selectFrom(table).select(columns as string[]).execute()) as Row[];
  const key = (r: Row): string => JSON.stringify(columns.map((c) => r[c]));
  return rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c]]))).sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

async function pgClient<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A new empty database: a SQLite file, or a PostgreSQL schema of its own. */
async function freshDb(kind: TestDb): Promise<{ url: string; searchPath?: string; dir?: string }> {
  if (kind === 'sqlite') {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-upgrade-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return { url: `sqlite:${join(dir, 'esnap.db')}`, dir };
  }
  const schema = `upg_${randomBytes(5).toString('hex')}`;
  await pgClient((c) => c.query(`CREATE SCHEMA ${schema}`));
  cleanups.push(() => pgClient((c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).then(() => undefined));
  return { url: PG_URL, searchPath: schema };
}

it('every migration has an upgrade step (a new migration needs its entry in `steps`)', () => {
  expect(Object.keys(steps)).toEqual([...knownMigrations]);
});

forEachDb('upgrades', (kind) => {
  // From the schema before each migration, and from the newest one (a restart: nothing to apply).
  for (let i = 1; i <= knownMigrations.length; i++) {
    const from = knownMigrations[i - 1]!;
    const applied = knownMigrations.slice(i);
    const title = applied.length > 0 ? `${applied.join(', ')}: from ${from} with data` : `restart on ${from} with data: nothing to apply`;
    it(`${title}, every row stays and what is new has its defaults`, async () => {
      const { url, searchPath } = await freshDb(kind);
      const db = openDatabase(url, searchPath ? { searchPath } : {}).db;
      const anyDb = db as unknown as AnyDb;
      try {
        await migrateUpTo(db, from);
        expect((await rowsOf(anyDb, 'esnap_migration', ['name'])).map((r) => r.name)).toEqual(knownMigrations.slice(0, i));
        await expect(migrateUpTo(db, 'no_such_migration')).rejects.toThrow('unknown migration "no_such_migration"');
        const seeded: Seeded = {};
        for (const m of knownMigrations.slice(0, i)) await steps[m]!.seed(anyDb, seeded);
        const tablesBefore = await tablesOf(anyDb, kind);
        const before = new Map<string, Row[]>();
        for (const [table, columns] of tablesBefore) before.set(table, await rowsOf(anyDb, table, columns));
        // The seeds are realistic only if no table of the old schema is left empty.
        for (const [table, rows] of before) expect(rows.length, `rows seeded in ${table}`).toBeGreaterThan(0);

        await migrateToLatest(db);

        const tablesAfter = await tablesOf(anyDb, kind);
        expect((await rowsOf(anyDb, 'esnap_migration', ['name'])).map((r) => r.name)).toEqual([...knownMigrations]);
        const newColumns: Record<string, Record<string, unknown>> = {};
        const newTables: Record<string, number> = {};
        for (const m of applied) {
          for (const [t, cols] of Object.entries(steps[m]!.newColumns)) newColumns[t] = { ...(newColumns[t] ?? {}), ...cols };
          Object.assign(newTables, steps[m]!.newTables);
        }
        for (const [table, columns] of tablesBefore) {
          if (table === 'esnap_migration') continue;
          // Every old row, every old value.
          expect(await rowsOf(anyDb, table, columns), `rows of ${table}`).toEqual(before.get(table));
          // What is new in an old table is declared, and every old row got its default.
          const added = tablesAfter.get(table)!.filter((c) => !columns.includes(c));
          expect(added.sort(), `new columns of ${table}`).toEqual(Object.keys(newColumns[table] ?? {}).sort());
          if (added.length > 0) {
            for (const r of await rowsOf(anyDb, table, added)) expect(r, `defaults in ${table}`).toEqual(newColumns[table]);
          }
        }
        const created = [...tablesAfter.keys()].filter((t) => !tablesBefore.has(t));
        expect(created.sort(), 'new tables').toEqual(Object.keys(newTables).sort());
        for (const t of created) expect((await rowsOf(anyDb, t, tablesAfter.get(t)!)).length, `rows of new table ${t}`).toBe(newTables[t]);

        for (const m of knownMigrations) await steps[m]!.verify?.(db, seeded);
      } finally {
        await db.destroy();
      }
    });
  }

  it('0009_task_define: a pending automatic create gets its definition from the context, and the overlap check finds it', async () => {
    const { url, searchPath } = await freshDb(kind);
    const db = openDatabase(url, searchPath ? { searchPath } : {}).db;
    const anyDb = db as unknown as AnyDb;
    try {
      await migrateUpTo(db, '0008_due_index');
      const seeded: Seeded = {};
      await steps['0001_initial']!.seed(anyDb, seeded);
      const daily = seeded['daily'] as number;
      const row = (await anyDb.selectFrom('task').selectAll().where('id', '=', '1e1d1-6f0e9a7c-3f1b-4c55-8a11').executeTakeFirstOrThrow()) as Row;
      const vm = row['vm_uuid'] as string;
      const pending = { ...row, type: 'a', state: 'PENDING', result: null, started: null, finished: null, context: JSON.stringify({ snapshotIds: [2], defineId: daily }) };
      await anyDb.insertInto('task').values({ ...pending, id: '1a1d1-6f0e9a7c-3f1b-4c55-8a21' }).execute();
      // Finished, or another kind: not backfilled.
      await anyDb.insertInto('task').values({ ...pending, id: '1a1d1-6f0e9a7c-3f1b-4c55-8a22', state: 'SUCCESS' }).execute();
      await anyDb.insertInto('task').values({ ...pending, id: '1a1d1-6f0e9a7c-3f1b-4c55-8a23', kind: 'snapshot_delete' }).execute();
      await migrateToLatest(db);
      const ids = await db.selectFrom('task').select(['id', 'define_id']).where('id', 'like', '1a1d1-6f0e9a7c-3f1b-4c55-8a2%').orderBy('id').execute();
      expect(ids.map((r) => r.define_id)).toEqual([daily, null, null]);
      expect([...(await definitionsInProgress(db, [{ id: daily, vmUuid: vm }], T0))]).toEqual([daily]);
    } finally {
      await db.destroy();
    }
  });

  describe('a database newer than this build', () => {
    it('esnap serve refuses to start: exit 1, naming the database migration and the newest this build knows', async () => {
      const fresh = await freshDb(kind);
      const db = openDatabase(fresh.url, fresh.searchPath ? { searchPath: fresh.searchPath } : {}).db;
      try {
        await migrateToLatest(db);
        await (db as unknown as AnyDb).insertInto('esnap_migration').values({ name: '9000_from_the_future', applied: new Date().toISOString() }).execute();
      } finally {
        await db.destroy();
      }
      const dataDir = fresh.dir ?? (await mkdtemp(join(tmpdir(), 'esnap-upgrade-pg-')));
      if (!fresh.dir) cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
      const { code, stdout, stderr } = await runEsnap(['serve'], {
        ESNAP_DATA_DIR: dataDir,
        ESNAP_LISTEN: '127.0.0.1:0',
        ESNAP_NODE: 'upgradenode',
        ESNAP_ADMIN_API_KEY: 'upgrade-test-admin-key-0123456789',
        ...(fresh.searchPath ? { ESNAP_DATABASE_URL: `${fresh.url}?options=${encodeURIComponent(`-c search_path=${fresh.searchPath}`)}` } : {}),
      });
      expect(code).toBe(1);
      expect(stderr).toBe(
        `esnap: the database schema is newer than this esnap: the database has migration 9000_from_the_future, this build knows migrations up to ${knownMigrations.at(-1)}; upgrade esnap to the version that wrote the database (or restore a backup taken before that upgrade)\n`,
      );
      expect(stdout).toBe('');
    }, 60_000);
  });
});
