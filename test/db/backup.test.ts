/**
 * `esnap db backup` against a running `esnap serve` (both real processes, SQLite in WAL mode) under
 * concurrent write load through the API; then the backup restored into a new data dir and served.
 *
 * What a consistent online copy must show: every row committed before the backup started is in it;
 * it passes integrity_check; it is one point in time (each sequential writer's rows in it form a
 * prefix of what that writer did, and a later backup holds everything an earlier one held).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { PG_URL } from '../helpers/server.js';
import { runEsnap, startServe, type EsnapServe } from '../helpers/esnap-process.js';
import { useTempDirs } from '../helpers/temp-dirs.js';
import { knownMigrations } from '../../src/db/migrate.js';

const KEY = 'backup-test-admin-key-0123456789';
const NODE = 'backupnode';
const WORKERS = 3;

/** `esnap serve` with this file's node and admin key; resolves once it listens. */
function serve(env: Record<string, string>): Promise<EsnapServe> {
  return startServe({ ESNAP_NODE: NODE, ESNAP_ADMIN_API_KEY: KEY, ...env });
}

/** An API call; with `wait`, ES-STREAM holds the answer until the task ends and its final status is returned. */
async function call(server: string, method: string, path: string, body?: unknown, wait = false): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'ES-API-KEY': KEY };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (wait) headers['ES-STREAM'] = 'es';
  const res = await fetch(`${server}/api${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  if (wait && res.headers.get('es_stream') === 'True') {
    const trimmed = text.replace(/^ +/, '');
    const nl = trimmed.indexOf('\n');
    return { status: Number(trimmed.slice(0, nl)), body: JSON.parse(trimmed.slice(nl + 1)) };
  }
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

/** One writer's operations, in the order it did them; an entry is added once its answer arrived. */
type Op = { kind: 'define' | 'snapshot'; vm: string; name: string };

/** What a backup file holds of the writers' rows, read straight from the file. */
interface Copy {
  readonly integrity: string[];
  readonly defines: Set<string>; // `${vm}/${name}`
  readonly snapshots: Map<string, number>; // `${vm}/${name}` → status
  readonly migrations: string[];
}

function readCopy(file: string): Copy {
  const db = new SQLite(file, { readonly: true, fileMustExist: true });
  try {
    const integrity = (db.pragma('integrity_check') as Array<{ integrity_check: string }>).map((r) => r.integrity_check);
    const defines = new Set(
      (db.prepare('SELECT v.hostname, d.name FROM snapshot_define d JOIN vm v ON v.uuid = d.vm_uuid').all() as Array<{ hostname: string; name: string }>).map(
        (r) => `${r.hostname}/${r.name}`,
      ),
    );
    const snapshots = new Map(
      (db.prepare('SELECT v.hostname, s.name, s.status FROM snapshot s JOIN vm v ON v.uuid = s.vm_uuid').all() as Array<{ hostname: string; name: string; status: number }>).map(
        (r) => [`${r.hostname}/${r.name}`, r.status],
      ),
    );
    const migrations = (db.prepare('SELECT name FROM esnap_migration ORDER BY name').all() as Array<{ name: string }>).map((r) => r.name);
    return { integrity, defines, snapshots, migrations };
  } finally {
    db.close();
  }
}

function holds(copy: Copy, op: Op): boolean {
  const key = `${op.vm}/${op.name}`;
  return op.kind === 'define' ? copy.defines.has(key) : copy.snapshots.has(key);
}

describe('esnap db backup', () => {
  // Registered first, so the folders are removed after the servers below have stopped.
  const tempDir = useTempDirs();
  const servers: EsnapServe[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop();
  });

  it('copies the live database under write load; the copy restores into a new data dir with every row committed before it', async () => {
    const dataDir = await tempDir('esnap-backup-live-');
    const backups = await tempDir('esnap-backup-files-');
    const a = await serve({ ESNAP_DATA_DIR: dataDir });
    servers.push(a);

    const vms = Array.from({ length: WORKERS }, (_, i) => `bk${i}.test`);
    for (const vm of vms) {
      expect((await call(a.url, 'POST', `/vm/${vm}/define/`, {})).status).toBe(201);
      expect((await call(a.url, 'POST', `/vm/${vm}/define/disk/1/`, { size: 1 })).status).toBe(201);
    }

    // Writers: each creates a definition, then a snapshot (waiting for its task), over and over.
    const done: Op[][] = vms.map(() => []);
    let stopLoad = false;
    const writer = async (w: number): Promise<void> => {
      const vm = vms[w]!;
      for (let k = 0; !stopLoad && k < 2000; k++) {
        const d = await call(a.url, 'POST', `/vm/${vm}/define/snapshot/d${k}/`, { schedule: '0 0 1 1 *', retention: 1, disk_id: 1 });
        if (d.status !== 201) throw new Error(`define ${vm} d${k}: ${d.status} ${JSON.stringify(d.body)}`);
        done[w]!.push({ kind: 'define', vm, name: `d${k}` });
        const s = await call(a.url, 'POST', `/vm/${vm}/snapshot/s${k}/`, { disk_id: 1 }, true);
        if (s.status !== 200 || s.body?.status !== 'SUCCESS') throw new Error(`snapshot ${vm} s${k}: ${s.status} ${JSON.stringify(s.body)}`);
        done[w]!.push({ kind: 'snapshot', vm, name: `s${k}` });
      }
    };
    let failure: unknown = null;
    const load = Promise.all(vms.map((_, w) => writer(w))).catch((err: unknown) => {
      failure = err;
      stopLoad = true;
    });
    while (failure === null && done.some((ops) => ops.length < 4)) await new Promise((r) => setTimeout(r, 20));
    if (failure !== null) throw failure;

    const runs: Array<{ file: string; before: Op[][]; writtenDuring: number }> = [];
    try {
      for (let n = 0; n < 3; n++) {
        const before = done.map((ops) => [...ops]);
        const file = join(backups, `esnap-${n}.db`);
        const r = await runEsnap(['db', 'backup', file], { ESNAP_DATA_DIR: dataDir, ESNAP_NODE: NODE });
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(r.stdout).toContain(`Backup written: ${file}`);
        expect(r.stdout).toContain(`cp ${file} ${join(dataDir, 'esnap.db')}`);
        expect(r.stdout).toContain(`rm -f ${join(dataDir, 'esnap.db')}-wal ${join(dataDir, 'esnap.db')}-shm`);
        const writtenDuring = done.reduce((sum, ops, w) => sum + ops.length - before[w]!.length, 0);
        runs.push({ file, before, writtenDuring });
      }
    } finally {
      stopLoad = true;
      await load;
    }
    expect(failure).toBeNull();
    // The load really ran while backups were being taken.
    expect(runs.reduce((sum, r) => sum + r.writtenDuring, 0)).toBeGreaterThan(0);
    // Nothing but the backups themselves in their folder: no temp file, no -wal/-shm.
    expect((await readdir(backups)).sort()).toEqual(['esnap-0.db', 'esnap-1.db', 'esnap-2.db']);

    let previous: Copy | null = null;
    for (const run of runs) {
      const copy = readCopy(run.file);
      expect(copy.integrity).toEqual(['ok']);
      expect(copy.migrations).toEqual([...knownMigrations]);
      for (const [w, ops] of done.entries()) {
        // Every operation answered before the backup started is in the copy; a finished snapshot is ok (1).
        for (const op of run.before[w]!) {
          expect(holds(copy, op), `${op.vm}/${op.name} in ${run.file}`).toBe(true);
          if (op.kind === 'snapshot') expect(copy.snapshots.get(`${op.vm}/${op.name}`)).toBe(1);
        }
        // One point in time: what the copy holds of a sequential writer is a prefix of its work.
        const held = ops.map((op) => holds(copy, op));
        const firstMissing = held.indexOf(false);
        if (firstMissing >= 0) expect(held.slice(firstMissing).every((h) => !h), `prefix of writer ${w} in ${run.file}`).toBe(true);
      }
      if (previous) {
        for (const k of previous.defines) expect(copy.defines.has(k)).toBe(true);
        for (const k of previous.snapshots.keys()) expect(copy.snapshots.has(k)).toBe(true);
      }
      previous = copy;
    }
    expect(await a.stop()).toBe(0);

    // Restore the last backup as the printed steps say, into a new data dir, on the same storage
    // (the snapshots live there, not in the database).
    const last = readCopy(runs.at(-1)!.file);
    const restoredDir = await tempDir('esnap-backup-restored-');
    await mkdir(restoredDir, { recursive: true });
    await copyFile(runs.at(-1)!.file, join(restoredDir, 'esnap.db'));
    const b = await serve({
      ESNAP_DATA_DIR: restoredDir,
      ESNAP_STORAGES: JSON.stringify([{ name: 'default', driver: 'file', root: join(dataDir, 'storage') }]),
    });
    servers.push(b);
    const listed = await call(b.url, 'GET', '/vm/');
    expect(listed.status).toBe(200);
    expect([...listed.body.result].sort()).toEqual([...vms].sort());
    for (const vm of vms) {
      const defs = await call(b.url, 'GET', `/vm/${vm}/define/snapshot/`);
      expect(defs.status).toBe(200);
      const defNames = (defs.body.result as Array<string | { name: string }>).map((d) => (typeof d === 'string' ? d : d.name)).sort();
      expect(defNames).toEqual([...last.defines].filter((k) => k.startsWith(`${vm}/`)).map((k) => k.slice(vm.length + 1)).sort());
      const snaps = await call(b.url, 'GET', `/vm/${vm}/snapshot/`, undefined);
      expect(snaps.status).toBe(200);
      const snapNames = new Set((snaps.body.result as Array<string | { name: string }>).map((s) => (typeof s === 'string' ? s : s.name)));
      // Snapshots finished in the copy are served; one still pending in it was cut off by the
      // "crash" the restore is, and the restored server's crash repair settles it.
      for (const [k, status] of last.snapshots) if (k.startsWith(`${vm}/`) && status === 1) expect(snapNames.has(k.slice(vm.length + 1)), k).toBe(true);
    }
    expect(await b.stop()).toBe(0);
  }, 120_000);

  it('refuses to overwrite an existing file, and to write into a missing folder', async () => {
    const dataDir = await tempDir('esnap-backup-refuse-');
    const env = { ESNAP_DATA_DIR: dataDir, ESNAP_NODE: NODE };
    // A database to copy: one start of the server creates it.
    const s = await serve({ ESNAP_DATA_DIR: dataDir });
    servers.push(s);
    const out = await tempDir('esnap-backup-out-');
    const existing = join(out, 'existing.db');
    await writeFile(existing, 'keep me');
    const r = await runEsnap(['db', 'backup', existing], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`esnap: ${existing} already exists; esnap db backup never overwrites a file: name a new one\n`);
    expect(await readFile(existing, 'utf8')).toBe('keep me');
    expect(await readdir(out)).toEqual(['existing.db']);

    const missing = join(out, 'no-such-folder', 'b.db');
    const m = await runEsnap(['db', 'backup', missing], env);
    expect(m.code).toBe(1);
    expect(m.stderr).toContain(`the folder ${join(out, 'no-such-folder')} does not exist`);
    expect(await readdir(out)).toEqual(['existing.db']);
    expect(await s.stop()).toBe(0);
  }, 60_000);

  it('refuses on PostgreSQL and points to pg_dump', async () => {
    const out = await tempDir('esnap-backup-pg-');
    const file = join(out, 'b.db');
    const r = await runEsnap(['db', 'backup', file], { ESNAP_DATABASE_URL: PG_URL, ESNAP_NODE: NODE });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('pg_dump -Fc');
    expect(r.stderr).toContain('pg_restore');
    expect(existsSync(file)).toBe(false);
  });

  it('`esnap db` without a sub-command prints the usage and exits 1', async () => {
    for (const args of [['db'], ['db', 'backup'], ['db', 'restore', 'x.db']]) {
      const r = await runEsnap(args, {});
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('db backup <file>');
    }
  });
});
