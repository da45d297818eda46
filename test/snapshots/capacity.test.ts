/**
 * The storage free-space floor (ESNAP_MIN_FREE_PERCENT, default 5) and the usage numbers it reads.
 *
 * 1. Usage bookkeeping on the ordinary test storage: the views and /metrics show the recorded
 *    size and free bytes; the guard reads those numbers, not storage (a recorded shortage refuses
 *    a create even though the disk has room); a task that changes the storage records fresh
 *    numbers before it ends; an unknown size never blocks. On PostgreSQL, a cluster agent's reports
 *    (after a task, and periodic) reach the servers as `usage` messages.
 * 2. A storage that is really full: a small XFS loop filesystem filled with a file. Manual creates
 *    (one disk and "all"), and "run now", answer 417 with nothing written; a scheduled slot is
 *    skipped with a warning, an alert and a `capacity` skip count, and no failure entry, while
 *    retention still prunes; after the file is deleted and usage refreshed, creates work again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forEachDb, testDatabases, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { loopFsUnavailable, makeLoopFs, type LoopFs } from '../platform/loopfs.js';
import { platformUnavailable } from '../platform/require.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { AgentRuntime } from '../../src/agent/agent-runtime.js';
import { makeNodeVm, newClusterDb, startAgent, startClusterServer, waitFor, waitNodeOnline, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';
import { ManualClock, autoSnapshots, define, defineByName, recordingLogger, settle } from '../scheduler/helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };

const FULL = 'Storage free space below the limit';

async function storageRow(s: TestServer) {
  return s.runtime.ctx.db
    .selectFrom('node_storage')
    .innerJoin('node', 'node.id', 'node_storage.node_id')
    .select(['node_storage.id', 'node_storage.size', 'node_storage.size_free'])
    .where('node.hostname', '=', s.node)
    .where('node_storage.name', '=', 'default')
    .executeTakeFirstOrThrow();
}

async function counts(s: TestServer) {
  const db = s.runtime.ctx.db;
  const n = async (table: 'snapshot' | 'task' | 'task_log') =>
    Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
  return { snapshots: await n('snapshot'), tasks: await n('task'), log: await n('task_log') };
}

/** The value of one sample in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

forEachDb('capacity: storage usage numbers', (kind) => {
  let s: Server;
  beforeAll(async () => {
    s = await withServer(kind);
    await makeVm(s, 'cu1', { disks: [1] });
  });
  afterAll(() => s.cleanup());

  it('storage views show size and size_free in bytes; the plain list stays names', async () => {
    const row = await storageRow(s);
    expect(row.size).toBeGreaterThan(0);
    const plain = await s.req('GET', `/api/node/${s.node}/storage/`);
    expect(plain.body.result).toEqual(['default']);
    const full = await s.req('GET', `/api/node/${s.node}/storage/`, { query: { full: 'true' } });
    expect(full.body.result).toEqual([{ name: 'default', driver: 'file', node: s.node, size: row.size, size_free: row.size_free }]);
    const one = await s.req('GET', `/api/node/${s.node}/storage/default/`);
    expect(one.body.result).toEqual(full.body.result[0]);
    expect(typeof one.body.result.size_free).toBe('number');
  });

  it('/metrics has esnap_storage_size_bytes and esnap_storage_free_bytes per node and storage', async () => {
    const row = await storageRow(s);
    const text = (await s.req('GET', '/metrics')).text;
    const labels = `{node="${s.node}",storage="default"}`;
    expect(sample(text, `esnap_storage_size_bytes${labels}`)).toBe(row.size);
    expect(sample(text, `esnap_storage_free_bytes${labels}`)).toBe(row.size_free);
  });

  it('the guard reads the recorded numbers, and a task that changes the storage records fresh ones', async () => {
    expect((await s.stream('POST', '/api/vm/cu1/snapshot/a/', { body: {} })).finalStatus).toBe(200);
    const real = await storageRow(s);
    // Record a shortage the disk does not have: the API believes the record (no statfs per request).
    await s.runtime.ctx.db.updateTable('node_storage').set({ size_free: Math.floor(real.size! * 0.01) }).where('id', '=', real.id).execute();
    const before = await counts(s);
    const refused = await s.req('POST', '/api/vm/cu1/snapshot/b/', { body: {} });
    expect(refused.status).toBe(417);
    expect(refused.body).toEqual({ detail: FULL });
    expect(await counts(s)).toEqual(before);
    // A delete is a storage-changing task: its agent records the real numbers before it ends.
    expect((await s.stream('DELETE', '/api/vm/cu1/snapshot/a/')).finalStatus).toBe(200);
    const after = await storageRow(s);
    expect(after.size).toBe(real.size);
    expect(after.size_free! / after.size!).toBeGreaterThan(0.05);
    expect((await s.stream('POST', '/api/vm/cu1/snapshot/b/', { body: {} })).finalStatus).toBe(200);
  });

  it('an unknown size never blocks, and the next task fills it in', async () => {
    const row = await storageRow(s);
    await s.runtime.ctx.db.updateTable('node_storage').set({ size: null, size_free: null }).where('id', '=', row.id).execute();
    const r = await s.stream('POST', '/api/vm/cu1/snapshot/c/', { body: {} });
    expect(r.finalStatus).toBe(200);
    const after = await storageRow(s);
    expect(after.size).toBe(row.size);
    expect(typeof after.size_free).toBe('number');
  });
});

forEachDb('capacity: a full storage', async (kind) => {
  const reason = await loopFsUnavailable('xfs');
  if (reason !== null) return platformUnavailable('needs an XFS loop filesystem', reason);

  const clock = new ManualClock('2026-05-01T00:30:00Z');
  const log = recordingLogger();
  const runner = new NodeCommandRunner();
  let fs: LoopFs;
  let s: Server;
  let vm: VmFixture;
  let filler: string;
  beforeAll(async () => {
    fs = await makeLoopFs('xfs', 320);
    filler = join(fs.mountpoint, 'filler');
    s = await withServer(kind, { clock, log, storages: () => [{ name: 'default', driver: 'file', root: join(fs.mountpoint, 'storage') }] });
    vm = await makeVm(s, 'cap1', { disks: [1, 1] });
  });
  afterAll(async () => {
    await s?.cleanup();
    await fs?.cleanup();
  });

  async function fire(at: string) {
    clock.set(at);
    const r = await s.runtime.scheduler.tick();
    await settle(s);
    return r;
  }

  it('automatic snapshots run while there is room', async () => {
    await define(s, 'cap1', vm.uuid, 'd', { schedule: '0 * * * *', retention: 3 });
    for (const at of ['2026-05-01T01:00:00Z', '2026-05-01T02:00:00Z', '2026-05-01T03:00:00Z']) {
      expect((await fire(at)).fired).toHaveLength(1);
    }
    expect((await autoSnapshots(s, vm.uuid)).map((x) => x.name)).toEqual(['d-20260501_010000', 'd-20260501_020000', 'd-20260501_030000']);
  });

  it('the agent reports the filled filesystem: below 5% free', async () => {
    const st = await statfs(fs.mountpoint);
    const size = st.blocks * st.bsize;
    const fill = st.bavail * st.bsize - Math.floor(size * 0.02);
    const r = await runner.run(['fallocate', '-l', String(fill), filler]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await s.runtime.agent!.reportUsage();
    const row = await storageRow(s);
    expect(row.size).toBe(size);
    expect((row.size_free! / row.size!) * 100).toBeLessThan(5);
    const one = await s.req('GET', `/api/node/${s.node}/storage/default/`);
    expect(one.body.result).toMatchObject({ size: row.size, size_free: row.size_free });
  });

  it('manual creates (one disk and all disks) and run now answer 417, and write nothing', async () => {
    const before = await counts(s);
    for (const body of [{}, { disk_id: 2 }, { disk_id: 'all' }]) {
      const r = await s.req('POST', '/api/vm/cap1/snapshot/m1/', { body });
      expect([r.status, r.body]).toEqual([417, { detail: FULL }]);
    }
    clock.set('2026-05-01T03:30:00Z'); // a name "run now" has not used yet
    const now = await s.req('POST', '/api/vm/cap1/define/snapshot/d/run/');
    expect([now.status, now.body]).toEqual([417, { detail: FULL }]);
    expect(await counts(s)).toEqual(before);
    expect((await defineByName(s, vm.uuid, 'd')).last_error).toBeNull();
  });

  it('a scheduled slot is skipped with an alert, and retention still prunes', async () => {
    expect((await s.req('PUT', '/api/vm/cap1/define/snapshot/d/', { body: { retention: 1 } })).status).toBe(200);
    const failuresBefore = await s.runtime.ctx.db.selectFrom('task_log').select('id').where('status', '=', 'FAILURE').execute();
    const r = await fire('2026-05-01T04:00:00Z');
    expect(r.fired).toEqual([]);
    expect(r.failed).toEqual([]);
    expect(r.skipped).toMatchObject([{ define: 'd', vm: 'cap1', reason: 'capacity' }]);
    const slotRow = await s.runtime.ctx.db.selectFrom('schedule_slot').select(['state', 'reason']).where('slot', '=', '2026-05-01T04:00:00.000Z').executeTakeFirst();
    expect(slotRow?.state).toBe('skipped');
    // Nothing new; the prune removed the two oldest.
    expect((await autoSnapshots(s, vm.uuid)).map((x) => x.name)).toEqual(['d-20260501_030000']);
    const prune = await s.runtime.ctx.db.selectFrom('task').select(['kind', 'type', 'state']).where('kind', '=', 'snapshot_delete').execute();
    expect(prune).toEqual([{ kind: 'snapshot_delete', type: 'a', state: 'SUCCESS' }]);
    // A skip, not a failure: no FAILURE entry, last_error untouched (it would stop retention).
    const failuresAfter = await s.runtime.ctx.db.selectFrom('task_log').select('id').where('status', '=', 'FAILURE').execute();
    expect(failuresAfter).toEqual(failuresBefore);
    expect((await defineByName(s, vm.uuid, 'd')).last_error).toBeNull();
    expect(log.messages('error')).toContain('Automatic snapshot d-20260501_040000 of server cap1@disk-1 skipped: storage default free space below 5%.');
    const warn = log.lines.find((l) => l.msg === 'scheduled slot skipped: storage free space below the limit');
    expect(warn?.obj).toMatchObject({ define: 'd', vm: 'cap1', disk_id: 1, storage: 'default', min_free_percent: 5 });
    const text = (await s.req('GET', '/metrics')).text;
    expect(sample(text, 'esnap_schedule_slots_skipped_total{vm="cap1",disk="1",define="d",reason="capacity"}')).toBe(1);
    expect(sample(text, 'esnap_alerts_total{type="storage_full",priority="ERROR"}')).toBe(1);
    expect(sample(text, 'esnap_definition_failures_total{vm="cap1",disk="1",define="d"}')).toBeUndefined();
  });

  it('after space is freed and usage refreshed, creates work again', async () => {
    await rm(filler);
    // XFS frees an unlinked file's blocks in the background; syncfs waits for that.
    expect((await runner.run(['sync', '-f', fs.mountpoint])).code).toBe(0);
    await s.runtime.agent!.reportUsage();
    const row = await storageRow(s);
    expect((row.size_free! / row.size!) * 100).toBeGreaterThan(5);
    const r = await s.stream('POST', '/api/vm/cap1/snapshot/m1/', { body: { disk_id: 'all' } });
    expect(r.finalStatus).toBe(200);
    expect((await fire('2026-05-01T05:00:00Z')).fired).toHaveLength(1);
    expect((await autoSnapshots(s, vm.uuid)).map((x) => x.name)).toEqual(['d-20260501_050000']);
  });
});

// Cluster mode: a separate agent process's reports travel as `usage` messages that servers consume.
if (testDatabases().includes('postgres')) {
  describe('capacity: usage from a cluster agent [postgres]', () => {
    let db: ClusterDb;
    let dir: string;
    let server: ClusterServer;
    let agent: AgentRuntime;
    beforeAll(async () => {
      db = await newClusterDb();
      dir = await mkdtemp(join(tmpdir(), 'esnap-capacity-'));
      server = await startClusterServer(db);
      agent = await startAgent(db, { node: 'node1', root: join(dir, 'node1') }, { heartbeatS: 5 });
      await waitNodeOnline(server, 'node1');
      await makeNodeVm(server, 'node1', 'cl1');
    });
    afterAll(async () => {
      await agent?.stop();
      await server?.close();
      await db?.drop();
      await rm(dir, { recursive: true, force: true });
    });

    it('after a task the agent reports fresh numbers, and the server records them', async () => {
      const s = { ...server, node: 'node1' } as TestServer;
      const real = await storageRow(s);
      expect(real.size).toBeGreaterThan(0);
      // A recorded shortage: refused, as on SQLite.
      await server.runtime.ctx.db.updateTable('node_storage').set({ size_free: 0 }).where('id', '=', real.id).execute();
      expect((await server.req('POST', '/api/vm/cl1/snapshot/a/', { body: {} })).body).toEqual({ detail: FULL });
      // Unknown numbers never block; the create task's report brings the real ones back.
      await server.runtime.ctx.db.updateTable('node_storage').set({ size: null, size_free: null }).where('id', '=', real.id).execute();
      expect((await server.stream('POST', '/api/vm/cl1/snapshot/a/', { body: {} })).finalStatus).toBe(200);
      const row = await waitFor('the usage message', async () => {
        const r = await storageRow(s);
        return r.size !== null ? r : null;
      });
      expect(row.size).toBe(real.size);
      expect(row.size_free! / row.size!).toBeGreaterThan(0.05);
      // The periodic report goes the same way.
      await server.runtime.ctx.db.updateTable('node_storage').set({ size_free: 1 }).where('id', '=', real.id).execute();
      await agent.agent.reportUsage();
      await waitFor('the periodic usage message', async () => (await storageRow(s)).size_free !== 1);
    });
  });
}
