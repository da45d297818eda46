/**
 * The storage-touching API flows of test/snapshots/snapshot.api.test.ts in cluster mode: two
 * servers (A, B) and two agents (node1, node2, each with its own file storage) on one PostgreSQL
 * schema, VMs on both nodes. Requests alternate between the servers; results may be completed by
 * either one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentRuntime } from '../../src/agent/agent-runtime.js';
import { consumeResults } from '../../src/tasks/result.consumer.js';
import { resyncAfterRepair } from '../../src/snapshots/snapshot.sync.js';
import { RESULTS_QUEUE } from '../../src/queue/pgboss.queue.js';
import { ADMIN_KEY } from '../helpers/server.js';
import type { VmFixture } from '../helpers/fixtures.js';
import {
  makeNodeVm,
  newClusterDb,
  sleep,
  startAgent,
  startClusterServer,
  waitFor,
  waitNodeOnline,
  waitTask,
  type ClusterDb,
  type ClusterServer,
} from './cluster.helpers.js';

describe('cluster: two servers, two agents', () => {
  let db: ClusterDb;
  let dir: string;
  let a: ClusterServer;
  let b: ClusterServer;
  const agents: Record<string, AgentRuntime> = {};
  let vm1: VmFixture;
  let vm2: VmFixture;

  beforeAll(async () => {
    db = await newClusterDb();
    dir = await mkdtemp(join(tmpdir(), 'esnap-cluster-'));
    a = await startClusterServer(db);
    b = await startClusterServer(db);
    agents['node1'] = await startAgent(db, { node: 'node1', root: join(dir, 'node1') });
    agents['node2'] = await startAgent(db, { node: 'node2', root: join(dir, 'node2') });
    await waitNodeOnline(a, 'node1');
    await waitNodeOnline(a, 'node2');
    vm1 = await makeNodeVm(a, 'node1', 'web01', { disks: [4, 4] });
    vm2 = await makeNodeVm(a, 'node2', 'web11', { disks: [4, 4] });
  });
  afterAll(async () => {
    for (const ag of Object.values(agents)) await ag.stop();
    await a?.close();
    await b?.close();
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('registers both nodes and their storages; GET /api/node shows status and last heartbeat', async () => {
    const r = await b.req('GET', '/api/node', { query: { full: 'true' } });
    expect(r.status).toBe(200);
    expect(r.body.result.map((n: { hostname: string }) => n.hostname)).toEqual(['node1', 'node2']);
    for (const n of r.body.result) {
      expect(Object.keys(n)).toEqual(['hostname', 'uuid', 'status', 'status_display', 'last_heartbeat']);
      expect(n).toMatchObject({ status: 2, status_display: 'online' });
      expect(n.last_heartbeat).toMatch(/Z$/);
    }
    const st = await a.req('GET', '/api/node/node2/storage/default');
    expect(st.body.result).toMatchObject({ name: 'default', driver: 'file', node: 'node2' });
    expect(typeof st.body.result.size).toBe('number');
  });

  it('creates through one server, answers status and the snapshot through the other', async () => {
    const r = await a.req('POST', '/api/vm/web01/snapshot/first/', { body: { disk_id: 1, note: 'hello' } });
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('PENDING');
    const st = await waitTask(b, r.body.task_id);
    expect(st.status).toBe(200);
    expect(st.body).toEqual({ task_id: r.body.task_id, status: 'SUCCESS', result: { returncode: 0, message: 'Snapshot successfully created', detail: '' } });
    const g = await b.req('GET', '/api/vm/web01/snapshot/first/');
    expect(g.body.result).toMatchObject({ hostname: 'web01', name: 'first', disk_id: 1, note: 'hello', status: 1 });
    expect(typeof g.body.result.size).toBe('number');
    const files = await readdir(join(dir, 'node1', '.snapshots', `${vm1.uuid}-disk0`));
    expect(files).toContain(`es-${g.body.result.id}`);
  });

  it('streams a create on the other node with ES-STREAM: es, and snapshots every disk at once', async () => {
    const r = await b.stream('POST', '/api/vm/web11/snapshot/streamed', { body: { disk_id: '2' } });
    expect(r.headers['es_stream']).toBe('True');
    expect(r.finalStatus).toBe(200);
    expect(r.final).toMatchObject({ status: 'SUCCESS', result: { returncode: 0, message: 'Snapshot successfully created' } });
    const all = await a.stream('POST', '/api/vm/web11/snapshot/everything', { body: { disk_id: 'all' } });
    expect(all.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully created', detail: 'disk_ids=1,2' } });
    const snaps = await readdir(join(dir, 'node2', '.snapshots', `${vm2.uuid}-disk1`));
    expect(snaps.filter((f) => f.startsWith('es-') && !f.endsWith('.json')).length).toBe(2);
  });

  it('wakes a stream on one server when another server completes the task (LISTEN/NOTIFY)', async () => {
    // Neither server takes results while the task is submitted: the agent's result waits in the
    // queue, the stream on A waits; then only B consumes results, so B completes the task.
    await a.runtime.cluster!.queue.stopConsumer(RESULTS_QUEUE);
    await b.runtime.cluster!.queue.stopConsumer(RESULTS_QUEUE);
    const res = await fetch(`${a.url}/api/vm/web01/snapshot/cross`, {
      method: 'POST',
      headers: { 'ES-API-KEY': ADMIN_KEY, 'ES-STREAM': 'es', 'Content-Type': 'application/json' },
      body: JSON.stringify({ disk_id: 2 }),
    });
    const taskId = res.headers.get('es_task_id')!;
    expect(taskId).toMatch(/^1e1d1-/);
    const woken = a.runtime.ctx.events.next(taskId);
    // The agent has run the job: its results are queued, nobody has completed the task.
    await waitFor('the agent to finish', async () => (await db.query(`SELECT 1 FROM ${db.bossSchema}.job WHERE name = $1 AND data->>'taskId' = $2 AND data->>'type' = 'finished'`, [RESULTS_QUEUE, taskId])).length === 1);
    expect((await a.runtime.ctx.tasks.get(taskId))!.state).toBe('PENDING');
    let wokenAt = 0;
    void woken.then(() => (wokenAt = Date.now()));
    const completedAt = Date.now();
    await consumeResults(b.runtime.ctx, b.runtime.cluster!.queue, resyncAfterRepair);
    // events.next has no timer: only B's NOTIFY, heard by A's listener, resolves it.
    await woken;
    expect(wokenAt - completedAt).toBeLessThan(3000);
    const text = await res.text();
    const body = text.replace(/^ +/, '');
    expect(body.split('\n')[0]).toBe('200');
    expect(JSON.parse(body.slice(body.indexOf('\n') + 1))).toMatchObject({ status: 'SUCCESS', result: { message: 'Snapshot successfully created' } });
    await consumeResults(a.runtime.ctx, a.runtime.cluster!.queue, resyncAfterRepair);
  });

  it('lists, and updates notes synchronously, through either server', async () => {
    expect((await a.req('GET', '/api/vm/web01/snapshot')).body.result).toEqual(['cross', 'first']);
    const f = await b.req('GET', '/api/vm/web11/snapshot', { query: { full: 'true', order_by: 'name' } });
    expect(f.body.result.map((o: { name: string }) => o.name)).toEqual(['everything', 'everything', 'streamed']);
    const n = await b.req('PUT', '/api/vm/web01/snapshot/first', { body: { note: 'changed' } });
    expect(n.body.result.note).toBe('changed');
  });

  it('rolls back a disk on node2 and keeps newer snapshots; refuses a running VM', async () => {
    const file = vm2.diskPaths[0]!;
    await writeFile(file, Buffer.from('version-1'), { flag: 'r+' });
    expect((await a.stream('POST', '/api/vm/web11/snapshot/v1', { body: {} })).finalStatus).toBe(200);
    await writeFile(file, Buffer.from('version-2'), { flag: 'r+' });
    expect((await b.stream('POST', '/api/vm/web11/snapshot/v2', { body: {} })).finalStatus).toBe(200);
    const r = await b.stream('PUT', '/api/vm/web11/snapshot/v1', { body: {} });
    expect(r.finalStatus).toBe(200);
    expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully restored' } });
    expect((await readFile(file)).subarray(0, 9).toString()).toBe('version-1');
    expect((await a.req('GET', '/api/vm/web11/snapshot')).body.result).toContain('v2');
    await a.runtime.ctx.db.updateTable('vm').set({ status: 2 }).where('uuid', '=', vm2.uuid).execute();
    expect((await a.req('PUT', '/api/vm/web11/snapshot/v1', { body: {} })).body).toEqual({ detail: 'VM is not stopped' });
    await a.runtime.ctx.db.updateTable('vm').set({ status: 1 }).where('uuid', '=', vm2.uuid).execute();
  });

  it('restores into a VM on the same node, and answers 428 for a VM on another node', async () => {
    await makeNodeVm(a, 'node2', 'web12', { disks: [4] });
    await makeNodeVm(a, 'node1', 'web02', { disks: [4] });
    const r = await a.stream('PUT', '/api/vm/web11/snapshot/v1', { body: { target_hostname_or_uuid: 'web12', target_disk_id: 1 } });
    expect(r.finalStatus).toBe(200);
    const path = await a.runtime.ctx.db
      .selectFrom('vm_disk')
      .innerJoin('vm', 'vm.uuid', 'vm_disk.vm_uuid')
      .select('path')
      .where('vm.hostname', '=', 'web12')
      .executeTakeFirstOrThrow();
    expect((await readFile(join(dir, 'node2', path.path))).subarray(0, 9).toString()).toBe('version-1');
    const other = await b.req('PUT', '/api/vm/web11/snapshot/v1', { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
    expect(other.status).toBe(428);
    expect(other.body).toEqual({ detail: 'Restore into a VM on another node is not supported' });
  });

  it('deletes one snapshot and bulk deletes several', async () => {
    const r = await a.stream('DELETE', '/api/vm/web11/snapshot/v2', { body: {} });
    expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully deleted', detail: '' } });
    expect((await b.req('GET', '/api/vm/web11/snapshot/v2')).status).toBe(404);
    for (const n of ['b1', 'b2', 'b3']) expect((await b.stream('POST', `/api/vm/web01/snapshot/${n}`, { body: {} })).finalStatus).toBe(200);
    const bulk = await b.stream('DELETE', '/api/vm/web01/snapshot', { body: { snapnames: ['b1', 'b2', 'nope'] } });
    expect(bulk.final).toMatchObject({ result: { returncode: 0, message: 'Snapshots successfully deleted', detail: "snapnames='b1,b2', disk_id=1" } });
    const names = (await a.req('GET', '/api/vm/web01/snapshot')).body.result;
    expect(names).not.toContain('b1');
    expect(names).toContain('b3');
  });

  it('syncs a VM disk and a node storage against the storage on the right node', async () => {
    const b3 = (await a.req('GET', '/api/vm/web01/snapshot/b3')).body.result;
    const snapDir = join(dir, 'node1', '.snapshots', `${vm1.uuid}-disk0`);
    await rm(join(snapDir, `es-${b3.id}`));
    await rm(join(snapDir, `es-${b3.id}.json`), { force: true });
    const r = await b.stream('PUT', '/api/vm/web01/snapshot', { body: {} });
    expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshots successfully synced; WARNING: 1 snapshot(s) lost' } });
    expect((await a.req('GET', '/api/vm/web01/snapshot/b3')).body.result.status).toBe(4);
    const node = await a.stream('PUT', '/api/node/node2/storage/default/snapshot', { body: {} });
    expect(node.finalStatus).toBe(200);
    expect(node.final).toMatchObject({ result: { returncode: 0, message: 'Snapshots successfully synced' } });
  });

  it('cancels a task no agent has taken: the job is withdrawn and never runs', async () => {
    await agents['node1']!.stop();
    try {
      const r = await a.req('POST', '/api/vm/web01/snapshot/never', { body: {} });
      expect(r.status).toBe(201);
      const c = await b.req('PUT', `/api/task/${r.body.task_id}/cancel`);
      expect(c.status).toBe(410);
      expect(c.body).toMatchObject({ status: 'REVOKED', result: 'terminated' });
      expect((await a.req('GET', '/api/vm/web01/snapshot/never')).status).toBe(404);
      agents['node1'] = await startAgent(db, { node: 'node1', root: join(dir, 'node1') });
      const after = await a.stream('POST', '/api/vm/web01/snapshot/after', { body: {} });
      expect(after.finalStatus).toBe(200);
      await sleep(200);
      // Storage holds exactly the OK snapshots of the disk: nothing was made for the cancelled task.
      const files = (await readdir(join(dir, 'node1', '.snapshots', `${vm1.uuid}-disk0`))).filter((f) => !f.endsWith('.json') && !f.startsWith('.'));
      const rows = await a.runtime.ctx.db.selectFrom('snapshot').select('id').where('vm_uuid', '=', vm1.uuid).where('disk_real_id', '=', 0).where('status', '=', 1).execute();
      expect(files.sort()).toEqual(rows.map((r) => `es-${r.id}`).sort());
    } finally {
      if (!agents['node1']) agents['node1'] = await startAgent(db, { node: 'node1', root: join(dir, 'node1') });
    }
  });
});
