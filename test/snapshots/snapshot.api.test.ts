import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm, type VmFixture } from '../helpers/fixtures.js';

const SNAP_KEYS = ['hostname', 'vm_uuid', 'define', 'name', 'disk_id', 'note', 'type', 'created', 'status', 'size', 'id', 'fsfreeze', 'pinned'];

forEachDb('snapshot API', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let vm: VmFixture;
  beforeAll(async () => {
    s = await withServer(kind);
    vm = await makeVm(s, 'web01', { disks: [4, 4] });
  });
  afterAll(async () => s.cleanup());

  describe('create', () => {
    it('answers 201 PENDING with a real task id, then the task succeeds', async () => {
      const r = await s.req('POST', '/api/vm/web01/snapshot/first/', { body: { disk_id: 1, note: 'hello' } });
      expect(r.status).toBe(201);
      expect(r.body.status).toBe('PENDING');
      expect(r.body.result).toBeNull();
      expect(r.body.task_id).toMatch(/^1e1d1-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$/);
      expect(r.headers['es_task_id']).toBe(r.body.task_id);
      const st = await waitTask(s, r.body.task_id);
      expect(st.status).toBe(200);
      expect(st.body).toEqual({
        task_id: r.body.task_id,
        status: 'SUCCESS',
        result: { returncode: 0, message: 'Snapshot successfully created', detail: '' },
      });
      const g = await s.req('GET', '/api/vm/web01/snapshot/first/');
      expect(g.status).toBe(200);
      expect(Object.keys(g.body.result)).toEqual(SNAP_KEYS);
      expect(g.body.result).toMatchObject({ hostname: 'web01', vm_uuid: vm.uuid, define: null, name: 'first', disk_id: 1, note: 'hello', type: 2, status: 1, fsfreeze: false, pinned: false });
      expect(typeof g.body.result.size).toBe('number');
      expect(g.body.result.created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$/);
      expect(g.body.task_id).toMatch(/^1d1d1-6f75849b-/);
    });

    it('streams with ES-STREAM: es until the final status line and JSON', async () => {
      const r = await s.stream('POST', '/api/vm/web01/snapshot/streamed', { body: { disk_id: '2' } });
      expect(r.status).toBe(201);
      expect(r.headers['es_stream']).toBe('True');
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ status: 'SUCCESS', result: { returncode: 0, message: 'Snapshot successfully created' } });
      const g = await s.req('GET', '/api/vm/web01/snapshot/streamed', { query: { disk_id: '2' } });
      expect(g.body.result.disk_id).toBe(2);
    });

    it('refuses an existing name with 406 and a bad disk with 412', async () => {
      expect((await s.req('POST', '/api/vm/web01/snapshot/first', { body: {} })).body).toEqual({ detail: 'Snapshot already exists' });
      const r = await s.req('POST', '/api/vm/web01/snapshot/other', { body: { disk_id: 3 } });
      expect(r.status).toBe(412);
      expect(r.body).toEqual({ detail: 'Invalid disk_id' });
      expect((await s.req('POST', '/api/vm/web01/snapshot/other', { body: { disk_id: 'x' } })).status).toBe(412);
    });

    it('validates name and note with Danube field messages', async () => {
      const long = 'a'.repeat(30);
      const r = await s.req('POST', `/api/vm/web01/snapshot/${long}`, { body: { note: 'x'.repeat(129) + '<' } });
      expect(r.status).toBe(400);
      expect(r.body.status).toBe('FAILURE');
      expect(r.body.result).toEqual({
        name: ['Ensure this value has at most 24 characters (it has 30).'],
        note: ['Ensure this value has at most 128 characters (it has 130).', 'Invalid value.'],
      });
      expect(r.body.task_id).toMatch(/^1d1d1-/);
      const bad = await s.req('POST', '/api/vm/web01/snapshot/_x', { body: {} });
      expect(bad.body.result).toEqual({ name: ['Invalid value.'] });
      const rows = await s.runtime.ctx.db.selectFrom('snapshot').select('name').where('vm_uuid', '=', vm.uuid).execute();
      expect(rows.map((x) => x.name).sort()).toEqual(['first', 'streamed']);
    });

    it('answers 404 for unknown VMs and names with characters outside the URL pattern', async () => {
      expect((await s.req('GET', '/api/vm/nope/snapshot/')).body).toEqual({ detail: 'VM not found' });
      expect((await s.req('POST', '/api/vm/web01/snapshot/a%20b', { body: {} })).status).toBe(404);
      expect((await s.req('GET', '/api/vm/web01/snapshot/missing')).body).toEqual({ detail: 'Snapshot not found' });
    });

    it('takes the disk lock: a second operation on the disk gets 400 Task did not acquire lock', async () => {
      await s.runtime.ctx.db.insertInto('task_lock').values({ key: `vm_snapshot vm:${vm.uuid} disk:0`, task_id: 'x', created: new Date().toISOString() }).execute();
      try {
        const r = await s.req('POST', '/api/vm/web01/snapshot/locked', { body: {} });
        expect(r.status).toBe(400);
        expect(r.body).toMatchObject({ status: 'FAILURE', result: 'Task did not acquire lock' });
        const row = await s.runtime.ctx.db.selectFrom('snapshot').select('id').where('name', '=', 'locked').executeTakeFirst();
        expect(row).toBeUndefined();
      } finally {
        await s.runtime.ctx.db.deleteFrom('task_lock').where('task_id', '=', 'x').execute();
      }
    });
  });

  describe('all disks at once', () => {
    it('snapshots every disk under one name in one task, and refuses a name used on any disk', async () => {
      const r = await s.stream('POST', '/api/vm/web01/snapshot/everything', { body: { disk_id: 'all', note: 'both' } });
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully created', detail: 'disk_ids=1,2' } });
      for (const d of ['1', '2']) {
        const g = await s.req('GET', '/api/vm/web01/snapshot/everything', { query: { disk_id: d } });
        expect(g.body.result).toMatchObject({ name: 'everything', disk_id: Number(d), status: 1, note: 'both' });
      }
      expect((await s.req('POST', '/api/vm/web01/snapshot/streamed', { body: { disk_id: 'all' } })).body).toEqual({ detail: 'Snapshot already exists' });
      expect((await s.req('POST', '/api/vm/web01/snapshot/x', { body: { disk_id: 'any' } })).body).toEqual({ detail: 'Invalid disk_id' });
      await s.stream('DELETE', '/api/vm/web01/snapshot', { body: { snapnames: ['everything'], disk_id: 1 } });
      await s.stream('DELETE', '/api/vm/web01/snapshot', { body: { snapnames: ['everything'], disk_id: 2 } });
    });

    it('makes all or none: a failure on one disk removes the snapshot made on the other', async () => {
      const v = await makeVm(s, 'twodisk', { disks: [1, 1] });
      const { rm, readdir } = await import('node:fs/promises');
      await rm(v.diskPaths[1]!);
      const r = await s.stream('POST', '/api/vm/twodisk/snapshot/partial', { body: { disk_id: 'all' } });
      expect(r.finalStatus).toBe(400);
      expect(r.final).toMatchObject({ status: 'FAILURE', result: { returncode: 1 } });
      const rows = await s.runtime.ctx.db.selectFrom('snapshot').select('id').where('vm_uuid', '=', v.uuid).execute();
      expect(rows).toEqual([]);
      const left = await readdir(`${s.storageRoot}/storage/.snapshots/${v.uuid}-disk0`).catch(() => []);
      expect(left.filter((f) => !f.startsWith('.'))).toEqual([]);
    });
  });

  describe('list', () => {
    it('lists names by default and objects with full, newest first', async () => {
      const r = await s.req('GET', '/api/vm/web01/snapshot');
      expect(r.body.result).toEqual(['streamed', 'first']);
      const f = await s.req('GET', '/api/vm/web01/snapshot', { query: { full: 'true', order_by: 'name' } });
      expect(f.body.result.map((o: { name: string }) => o.name)).toEqual(['first', 'streamed']);
      expect(Object.keys(f.body.result[0])).toEqual(SNAP_KEYS);
      expect((await s.req('GET', '/api/vm/web01/snapshot', { query: { disk_id: '2' } })).body.result).toEqual(['streamed']);
      expect((await s.req('GET', '/api/vm/web01/snapshot', { query: { type: '1' } })).body.result).toEqual([]);
      expect((await s.req('GET', '/api/vm/web01/snapshot', { query: { type: '0' } })).body).toEqual({ detail: 'Invalid snapshot type' });
      expect((await s.req('GET', '/api/vm/web01/snapshot', { query: { full: 'false', extended: 'false' } })).body.result).toEqual(['streamed', 'first']);
      const bad = await s.req('GET', '/api/vm/web01/snapshot', { query: { order_by: 'bogus' } });
      expect(bad.status).toBe(412);
      expect(bad.body.detail).toBe('Invalid order_by; Possible sort fields are: hostname, created, name, disk_id, size');
    });
  });

  describe('note and pin', () => {
    it('updates the note synchronously and validates it', async () => {
      const r = await s.req('PUT', '/api/vm/web01/snapshot/first', { body: { note: 'changed' } });
      expect(r.status).toBe(200);
      expect(r.body.result.note).toBe('changed');
      const bad = await s.req('PUT', '/api/vm/web01/snapshot/first', { body: { note: 'a;b' } });
      expect(bad.status).toBe(400);
      expect(bad.body.result).toEqual({ note: ['Invalid value.'] });
      const pin = await s.req('PUT', '/api/vm/web01/snapshot/first', { body: { pinned: true } });
      expect(pin.body.result.pinned).toBe(true);
      expect((await s.req('DELETE', '/api/vm/web01/snapshot/first', { body: {} })).body).toEqual({ detail: 'Snapshot is pinned' });
      await s.req('PUT', '/api/vm/web01/snapshot/first', { body: { pinned: 'false' } });
    });
  });

  describe('rollback', () => {
    it('restores the bytes of the disk, keeps newer snapshots on the file driver, and refuses a running VM', async () => {
      const file = vm.diskPaths[0]!;
      await writeFile(file, Buffer.from('version-1'), { flag: 'r+' });
      expect((await s.stream('POST', '/api/vm/web01/snapshot/v1', { body: {} })).finalStatus).toBe(200);
      await writeFile(file, Buffer.from('version-2'), { flag: 'r+' });
      expect((await s.stream('POST', '/api/vm/web01/snapshot/v2', { body: {} })).finalStatus).toBe(200);
      const noForce = await s.req('PUT', '/api/vm/web01/snapshot/v1', { body: { force: false } });
      expect(noForce.status).toBe(417);
      expect(noForce.body).toEqual({ detail: 'VM has more recent snapshots' });
      const r = await s.stream('PUT', '/api/vm/web01/snapshot/v1', { body: {} });
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully restored' } });
      expect((await readFile(file)).subarray(0, 9).toString()).toBe('version-1');
      const names = (await s.req('GET', '/api/vm/web01/snapshot')).body.result;
      expect(names).toContain('v2');
      const vmRow = await s.runtime.ctx.db.selectFrom('vm').select('status').where('uuid', '=', vm.uuid).executeTakeFirstOrThrow();
      expect(vmRow.status).toBe(1);
      await s.runtime.ctx.db.updateTable('vm').set({ status: 2 }).where('uuid', '=', vm.uuid).execute();
      const running = await s.req('PUT', '/api/vm/web01/snapshot/v1', { body: {} });
      expect(running.status).toBe(423);
      expect(running.body).toEqual({ detail: 'VM is not stopped' });
      await s.runtime.ctx.db.updateTable('vm').set({ status: 1 }).where('uuid', '=', vm.uuid).execute();
    });

    it('restores into another VM disk of the same size and refuses other sizes', async () => {
      await makeVm(s, 'web02', { disks: [4, 8] });
      const bad = await s.req('PUT', '/api/vm/web01/snapshot/v1', { body: { target_hostname_or_uuid: 'web02', target_disk_id: 2 } });
      expect(bad.status).toBe(428);
      expect(bad.body).toEqual({ detail: 'Disk size mismatch' });
      const missing = await s.req('PUT', '/api/vm/web01/snapshot/v1', { body: { target_hostname_or_uuid: 'web02' } });
      expect(missing.body.result).toEqual({ target_disk_id: ['This field is required when target_hostname_or_uuid is specified.'] });
      const nf = await s.req('PUT', '/api/vm/web01/snapshot/v1', { body: { target_hostname_or_uuid: 'zzz', target_disk_id: 1 } });
      expect(nf.body.result).toEqual({ target_hostname_or_uuid: ['VM not found'] });
      const r = await s.stream('PUT', '/api/vm/web01/snapshot/v1', { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
      expect(r.finalStatus).toBe(200);
      const web02 = await s.runtime.ctx.db.selectFrom('vm_disk').innerJoin('vm', 'vm.uuid', 'vm_disk.vm_uuid').select('path').where('vm.hostname', '=', 'web02').where('real_id', '=', 0).executeTakeFirstOrThrow();
      const content = await readFile(`${s.storageRoot}/storage/${web02.path}`);
      expect(content.subarray(0, 9).toString()).toBe('version-1');
    });
  });

  describe('delete', () => {
    it('deletes one snapshot on storage and in the database', async () => {
      const r = await s.stream('DELETE', '/api/vm/web01/snapshot/v2', { body: {} });
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully deleted', detail: '' } });
      expect((await s.req('GET', '/api/vm/web01/snapshot/v2')).status).toBe(404);
    });

    it('bulk deletes several, with Danube checks', async () => {
      expect((await s.req('DELETE', '/api/vm/web01/snapshot', { body: {} })).body).toEqual({ detail: 'Invalid snapnames' });
      expect((await s.req('DELETE', '/api/vm/web01/snapshot', { body: { snapnames: ['zz'] } })).body).toEqual({ detail: 'Snapshot not found' });
      for (const n of ['b1', 'b2', 'b3']) expect((await s.stream('POST', `/api/vm/web01/snapshot/${n}`, { body: {} })).finalStatus).toBe(200);
      const r = await s.stream('DELETE', '/api/vm/web01/snapshot', { body: { snapnames: ['b1', 'b2', 'nope'] } });
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshots successfully deleted', detail: "snapnames='b1,b2', disk_id=1" } });
      const names = (await s.req('GET', '/api/vm/web01/snapshot')).body.result;
      expect(names).not.toContain('b1');
      expect(names).toContain('b3');
    });
  });

  describe('sync', () => {
    it('marks snapshots removed behind its back lost, finds unknown ones, and deletes lost rows synchronously', async () => {
      const snapDir = `${s.storageRoot}/storage/.snapshots/${vm.uuid}-disk0`;
      const before = await readdir(snapDir);
      const b3 = (await s.req('GET', '/api/vm/web01/snapshot/b3')).body.result;
      const victim = before.find((f) => f === `es-${b3.id}`);
      expect(victim).toBeDefined();
      const { rm } = await import('node:fs/promises');
      await rm(`${snapDir}/${victim}`);
      await rm(`${snapDir}/${victim}.json`, { force: true });
      const r = await s.stream('PUT', '/api/vm/web01/snapshot', { body: {} });
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshots successfully synced; WARNING: 1 snapshot(s) lost' } });
      const lost = (await s.req('GET', '/api/vm/web01/snapshot/b3')).body.result;
      expect(lost.status).toBe(4);
      const del = await s.req('DELETE', '/api/vm/web01/snapshot/b3', { body: {} });
      expect(del.status).toBe(200);
      expect(del.body.result).toEqual({ message: 'Snapshot successfully deleted from DB' });
      // A snapshot row that vanished from the database is found again by the next sync.
      const v1 = (await s.req('GET', '/api/vm/web01/snapshot/v1')).body.result;
      await s.runtime.ctx.db.deleteFrom('snapshot').where('id', '=', v1.id).execute();
      const again = await s.stream('PUT', '/api/vm/web01/snapshot', { body: { disk_id: 1 } });
      expect(again.final).toMatchObject({ result: { message: 'Snapshots successfully synced; WARNING: 1 snapshot(s) found' } });
      const found = (await s.req('GET', '/api/vm/web01/snapshot/v1')).body.result;
      expect(found).toMatchObject({ id: v1.id, note: 'Found by snapshot sync', status: 1 });
    });
  });

  describe('node storage', () => {
    it('lists and syncs a node storage for super admins only', async () => {
      const r = await s.req('GET', `/api/node/${s.node}/storage/default/snapshot`, { query: { vm: 'web01' } });
      expect(r.status).toBe(200);
      expect(r.body.result).toContain('v1');
      expect((await s.req('GET', `/api/node/${s.node}/storage/nope/snapshot`)).body).toEqual({ detail: 'Storage not found' });
      const d = await s.req('GET', `/api/node/${s.node}/storage/default/snapshot`, { query: { disk_id: '2', full: 'yes' } });
      expect(d.status).toBe(200);
      expect(d.body.result.every((o: { disk_id: number }) => o.disk_id === 2)).toBe(true);
      expect((await s.req('GET', `/api/node/${s.node}/storage/default/snapshot`, { query: { disk_id: 'x' } })).status).toBe(412);
      const sync = await s.stream('PUT', `/api/node/${s.node}/storage/default/snapshot`, { body: {} });
      expect(sync.finalStatus).toBe(200);
      expect(sync.final).toMatchObject({ result: { returncode: 0, message: 'Snapshots successfully synced' } });
      const user = await makeUser(s, 'plain');
      expect((await s.req('GET', `/api/node/${s.node}/storage/default/snapshot`, { key: user.key })).body).toEqual({ detail: 'Permission denied' });
    });
  });

  describe('ownership', () => {
    it('hides VMs of other users behind 404 VM not found', async () => {
      const u = await makeUser(s, 'owner2');
      await makeVm(s, 'mine', { ownerId: u.id });
      expect((await s.req('GET', '/api/vm/web01/snapshot', { key: u.key })).body).toEqual({ detail: 'VM not found' });
      expect((await s.req('GET', '/api/vm/mine/snapshot', { key: u.key })).status).toBe(200);
    });
  });
});

async function waitTask(s: TestServer, taskId: string): Promise<{ status: number; body: any }> {
  for (let i = 0; i < 200; i++) {
    const r = await s.req('GET', `/api/task/${taskId}/status`);
    if (r.status !== 201) return r;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error('task did not finish');
}

forEachDb('fsfreeze flag', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind);
  });
  afterAll(async () => s.cleanup());

  it('ignores fsfreeze without a guest agent socket, and flags a stopped VM with one as consistent', async () => {
    await makeVm(s, 'noqga');
    const a = await s.stream('POST', '/api/vm/noqga/snapshot/f1', { body: { fsfreeze: true } });
    expect(a.final).toMatchObject({ result: { message: 'Snapshot successfully created' } });
    expect((await s.req('GET', '/api/vm/noqga/snapshot/f1')).body.result.fsfreeze).toBe(false);
    await makeVm(s, 'stoppedqga', { qga: '/run/esnap-test/none.sock' });
    const b = await s.stream('POST', '/api/vm/stoppedqga/snapshot/f1', { body: { fsfreeze: 'true' } });
    expect(b.final).toMatchObject({ result: { message: 'Snapshot successfully created' } });
    expect((await s.req('GET', '/api/vm/stoppedqga/snapshot/f1')).body.result.fsfreeze).toBe(true);
  });

  it('reports a running VM whose guest could not be frozen as not application-consistent', async () => {
    await makeVm(s, 'runningqga', { qga: '/run/esnap-test/missing.sock', status: 2 });
    const r = await s.stream('POST', '/api/vm/runningqga/snapshot/f1', { body: { fsfreeze: true } });
    expect(r.finalStatus).toBe(200);
    expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully created (filesystem freeze failed)' } });
    expect((await s.req('GET', '/api/vm/runningqga/snapshot/f1')).body.result.fsfreeze).toBe(false);
  });
});
