import { stat, writeFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser } from '../helpers/fixtures.js';

const MiB = 1024 * 1024;
const DISK_KEYS = ['disk_id', 'zpool', 'path', 'size'];

forEachDb('VM disks', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let root: string;
  let alice: { id: number; key: string };

  async function newVm(hostname: string, body: Record<string, unknown> = {}): Promise<string> {
    const r = await s.req('POST', `/api/vm/${hostname}/define`, { body });
    expect(r.status).toBe(201);
    return r.body.result.uuid as string;
  }

  async function rows(table: 'vm_disk' | 'snapshot' | 'snapshot_define', vmUuid: string): Promise<number> {
    const r = await s.runtime.ctx.db.selectFrom(table).select('vm_uuid').where('vm_uuid', '=', vmUuid).execute();
    return r.length;
  }

  /** A real snapshot of a disk on storage (through the agent), with its row and a definition. */
  async function snapshotOf(vmUuid: string, realId: number, path: string, id: string): Promise<string> {
    const out = await s.runtime.agent!.run({ op: 'create', items: [{ storage: 'default', disk: { path }, id, name: id }] });
    expect(out.returncode).toBe(0);
    const db = s.runtime.ctx.db;
    const storage = await db.selectFrom('node_storage').select('id').where('name', '=', 'default').executeTakeFirstOrThrow();
    const now = new Date().toISOString();
    await db
      .insertInto('snapshot')
      .values({
        vm_uuid: vmUuid,
        define_id: null,
        name: id,
        type: 2,
        status: 1,
        storage_id: storage.id,
        size: null,
        note: '',
        fsfreeze: 0,
        pinned: 0,
        disk_real_id: realId,
        status_change: null,
        created: now,
        changed: now,
      })
      .execute();
    await db
      .insertInto('snapshot_define')
      .values({
        vm_uuid: vmUuid,
        disk_real_id: realId,
        name: `d${id.replace(/\D/g, '')}`,
        desc: '',
        schedule: '0 0 * * *',
        retention: 1,
        active: 1,
        fsfreeze: 0,
        tz: 'UTC',
        catchup: 0,
        retention_days: null,
        next_run: null,
        last_run: null,
        last_success: null,
        last_error: null,
        created: now,
        changed: now,
      })
      .execute();
    const file = join(root, '.snapshots', path, id);
    expect(existsSync(file)).toBe(true);
    return file;
  }

  /** Waits for a task the way streams do: woken by its completion. */
  async function waitTask(id: string) {
    for (;;) {
      const woken = s.runtime.ctx.events.next(id);
      const st = await s.runtime.ctx.tasks.statusOf(id);
      if (st.done) return st;
      await woken;
    }
  }

  beforeAll(async () => {
    s = await withServer(kind);
    root = join(s.storageRoot, 'storage');
    alice = await makeUser(s, 'alice');
  });
  afterAll(() => s.cleanup());

  describe('create', () => {
    it('creates a sparse image of the given size and answers 201 once it exists', async () => {
      const uuid = await newVm('disk01');
      const r = await s.req('POST', '/api/vm/disk01/define/disk/1/', { body: { size: 4 } });
      expect(r.status).toBe(201);
      expect(r.body.status).toBe('SUCCESS');
      expect(Object.keys(r.body.result)).toEqual(DISK_KEYS);
      expect(r.body.result).toEqual({ disk_id: 1, zpool: 'default', path: `${uuid}-disk0`, size: 4 });
      const st = await stat(join(root, `${uuid}-disk0`));
      expect(st.isFile()).toBe(true);
      expect(st.size).toBe(4 * MiB);
      expect(st.blocks * 512).toBeLessThan(st.size); // sparse: no data blocks written
      expect(await rows('vm_disk', uuid)).toBe(1);
      const log = await s.runtime.ctx.db
        .selectFrom('task_log')
        .selectAll()
        .where('object_name', '=', 'disk01')
        .where('msg', '=', 'Create server disk definition')
        .orderBy('id')
        .execute();
      // Two rows, as Danube: PENDING at submission, then the result.
      expect(log.map((e) => e.status)).toEqual(['PENDING', 'SUCCESS']);
      expect(log[0]!.task_id).toMatch(/^1e1d1-/);
      expect((await s.req('GET', '/api/vm/disk01/define')).body.result.disks).toBe(1);
    });

    it('takes only the next disk_id (412 otherwise)', async () => {
      for (const id of ['1', '3', '0', 'abc', '-1']) {
        const r = await s.req('POST', `/api/vm/disk01/define/disk/${id}`, { body: { size: 1 } });
        expect(r.status, id).toBe(412);
        expect(r.body).toEqual({ detail: 'Invalid disk_id' });
      }
    });

    it('places a disk at an explicit path inside the storage', async () => {
      const r = await s.req('POST', '/api/vm/disk01/define/disk/2', { body: { path: 'images/disk01-extra.img', size: '2', zpool: 'default' } });
      expect(r.status).toBe(201);
      expect(r.body.result).toEqual({ disk_id: 2, zpool: 'default', path: 'images/disk01-extra.img', size: 2 });
      expect((await stat(join(root, 'images/disk01-extra.img'))).size).toBe(2 * MiB);
    });

    it('refuses path traversal with no row, no task and no file', async () => {
      const uuid = await newVm('trav01');
      const tasksBefore = (await s.runtime.ctx.db.selectFrom('task').select('id').execute()).length;
      for (const path of ['../escape.img', '/etc/passwd', 'a/../../escape.img', '.snapshots/x', 'a//b', 'dir/', '..']) {
        const r = await s.req('POST', '/api/vm/trav01/define/disk/1', { body: { path, size: 1 } });
        expect(r.status, path).toBe(400);
        expect(r.body.status).toBe('FAILURE');
        expect(r.body.result, path).toEqual({ path: ['Invalid value.'] });
      }
      expect(await rows('vm_disk', uuid)).toBe(0);
      expect((await s.runtime.ctx.db.selectFrom('task').select('id').execute()).length).toBe(tasksBefore);
      expect(existsSync(join(s.storageRoot, 'escape.img'))).toBe(false);
      expect(existsSync(join(root, '.snapshots', 'x'))).toBe(false);
    });

    it('validates zpool and size, in field order', async () => {
      const r = await s.req('POST', '/api/vm/trav01/define/disk/1', { body: { zpool: 'nope', size: 0 } });
      expect(r.status).toBe(400);
      expect(r.body.result).toEqual({
        zpool: ["Storage does not exist on the VM's node"],
        size: ['Ensure this value is greater than or equal to 1.'],
      });
      const missing = await s.req('POST', '/api/vm/trav01/define/disk/1', { body: {} });
      expect(missing.body.result).toEqual({ size: ['This field is required.'] });
      const types = await s.req('POST', '/api/vm/trav01/define/disk/1', { body: { zpool: null, path: ['x'], size: 'big' } });
      expect(Object.keys(types.body.result)).toEqual(['zpool', 'path', 'size']);
      expect(types.body.result.size).toEqual(['Enter a whole number.']);
      const arr = await s.req('POST', '/api/vm/trav01/define/disk/1', { body: 'text' });
      expect(arr.body.result).toEqual({ non_field_errors: ['Invalid data'] });
    });

    it('refuses a path that another disk of the storage uses (406)', async () => {
      const r = await s.req('POST', '/api/vm/trav01/define/disk/1', { body: { path: 'images/disk01-extra.img', size: 2 } });
      expect(r.status).toBe(406);
      expect(r.body).toEqual({ detail: 'Disk already exists' });
    });

    it('answers 400 FAILURE with the task message when the agent fails, leaving no row', async () => {
      const uuid = await newVm('fail01');
      await writeFile(join(root, 'blocker'), 'x');
      const r = await s.req('POST', '/api/vm/fail01/define/disk/1', { body: { path: 'blocker/disk.img', size: 1 } });
      expect(r.status).toBe(400);
      expect(r.body.status).toBe('FAILURE');
      expect(typeof r.body.result).toBe('string');
      expect(r.body.result).toContain('blocker/disk.img');
      expect(await rows('vm_disk', uuid)).toBe(0);
      const task = await s.runtime.ctx.db.selectFrom('task').selectAll().where('vm_uuid', '=', uuid).executeTakeFirstOrThrow();
      expect(task.state).toBe('FAILURE');
      expect(await s.runtime.ctx.db.selectFrom('task_lock').selectAll().where('task_id', '=', task.id).execute()).toHaveLength(0);
    });

    it('needs an operational node (423)', async () => {
      const db = s.runtime.ctx.db;
      await db.updateTable('node').set({ status: 1 }).where('hostname', '=', s.node).execute();
      try {
        const r = await s.req('POST', '/api/vm/fail01/define/disk/1', { body: { size: 1 } });
        expect(r.status).toBe(423);
        expect(r.body).toEqual({ detail: 'Node is not operational' });
      } finally {
        await db.updateTable('node').set({ status: 2 }).where('hostname', '=', s.node).execute();
      }
    });
  });

  describe('read, update', () => {
    it('lists and shows disks', async () => {
      const list = await s.req('GET', '/api/vm/disk01/define/disk');
      expect(list.status).toBe(200);
      expect(list.body.result.map((d: { disk_id: number }) => d.disk_id)).toEqual([1, 2]);
      expect(Object.keys(list.body.result[1])).toEqual(DISK_KEYS);
      const one = await s.req('GET', '/api/vm/disk01/define/disk/2');
      expect(one.body.result).toEqual(list.body.result[1]);
      for (const id of ['3', '0', 'x']) expect((await s.req('GET', `/api/vm/disk01/define/disk/${id}`)).status).toBe(412);
    });

    it('refuses resize (417), with VM has snapshots when the disk has any', async () => {
      const same = await s.req('PUT', '/api/vm/disk01/define/disk/1', { body: { size: 4, zpool: 'default' } });
      expect(same.status).toBe(200);
      expect(same.body.result.size).toBe(4);
      const grow = await s.req('PUT', '/api/vm/disk01/define/disk/1', { body: { size: 8 } });
      expect(grow.status).toBe(417);
      expect(grow.body).toEqual({ detail: 'Disk resize is not supported' });
      const move = await s.req('PUT', '/api/vm/disk01/define/disk/1', { body: { path: 'elsewhere.img' } });
      expect(move.status).toBe(417);
      const bad = await s.req('PUT', '/api/vm/disk01/define/disk/1', { body: { size: -1 } });
      expect(bad.status).toBe(400);
      expect(bad.body.result).toEqual({ size: ['Ensure this value is greater than or equal to 1.'] });
      const vm = (await s.req('GET', '/api/vm/disk01/define')).body.result;
      await snapshotOf(vm.uuid, 0, `${vm.uuid}-disk0`, 'es-901');
      const withSnap = await s.req('PUT', '/api/vm/disk01/define/disk/1', { body: { size: 8 } });
      expect(withSnap.status).toBe(417);
      expect(withSnap.body).toEqual({ detail: 'VM has snapshots' });
    });

    it('needs Admin for writes and hides other owners’ VMs', async () => {
      await newVm('alicevm', { owner: 'alice' });
      for (const method of ['POST', 'PUT', 'DELETE']) {
        const r = await s.req(method, '/api/vm/alicevm/define/disk/1', { key: alice.key, body: { size: 1 } });
        expect(r.status, method).toBe(403);
        expect(r.body).toEqual({ detail: 'Permission denied' });
      }
      expect((await s.req('GET', '/api/vm/alicevm/define/disk', { key: alice.key })).body.result).toEqual([]);
      const other = await s.req('GET', '/api/vm/disk01/define/disk', { key: alice.key });
      expect(other.status).toBe(404);
      expect(other.body).toEqual({ detail: 'VM not found' });
      expect((await s.req('PATCH', '/api/vm/disk01/define/disk/1', { body: {} })).status).toBe(405);
    });
  });

  describe('delete', () => {
    it('deletes a disk with its snapshots; later disks keep their real ids and paths', async () => {
      const uuid = await newVm('del01');
      await s.req('POST', '/api/vm/del01/define/disk/1', { body: { size: 1 } });
      await s.req('POST', '/api/vm/del01/define/disk/2', { body: { size: 1 } });
      const snapFile = await snapshotOf(uuid, 0, `${uuid}-disk0`, 'es-911');
      await s.req('PUT', '/api/vm/del01/status/start');
      const running = await s.req('DELETE', '/api/vm/del01/define/disk/1');
      expect(running.status).toBe(423);
      expect(running.body).toEqual({ detail: 'VM is not stopped' });
      await s.req('PUT', '/api/vm/del01/status/stop');

      const r = await s.stream('DELETE', '/api/vm/del01/define/disk/1');
      expect(r.status).toBe(201);
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ status: 'SUCCESS', result: { returncode: 0 } });
      expect(existsSync(join(root, `${uuid}-disk0`))).toBe(false);
      expect(existsSync(snapFile)).toBe(false);
      expect(existsSync(join(root, `${uuid}-disk1`))).toBe(true);
      expect(await rows('snapshot', uuid)).toBe(0);
      expect(await rows('snapshot_define', uuid)).toBe(0);
      const list = await s.req('GET', '/api/vm/del01/define/disk');
      expect(list.body.result).toEqual([{ disk_id: 1, zpool: 'default', path: `${uuid}-disk1`, size: 1 }]);
      const next = await s.req('POST', '/api/vm/del01/define/disk/2', { body: { size: 1 } });
      expect(next.body.result).toEqual({ disk_id: 2, zpool: 'default', path: `${uuid}-disk2`, size: 1 });
    });

    it('answers 201 PENDING without ES-STREAM', async () => {
      const uuid = await newVm('del02');
      await s.req('POST', '/api/vm/del02/define/disk/1', { body: { size: 1 } });
      const r = await s.req('DELETE', '/api/vm/del02/define/disk/1');
      expect(r.status).toBe(201);
      expect(r.body).toMatchObject({ status: 'PENDING', result: null });
      const done = await waitTask(r.body.task_id as string);
      expect(done.found && done.body.status).toBe('SUCCESS');
      expect(await rows('vm_disk', uuid)).toBe(0);
    });

    it('deletes a VM with disks: one task destroys images and snapshots, then every row goes', async () => {
      const uuid = await newVm('vmdel01');
      await s.req('POST', '/api/vm/vmdel01/define/disk/1', { body: { size: 2 } });
      await s.req('POST', '/api/vm/vmdel01/define/disk/2', { body: { size: 1, path: 'vmdel01/second.img' } });
      const snap0 = await snapshotOf(uuid, 0, `${uuid}-disk0`, 'es-921');
      const snap1 = await snapshotOf(uuid, 1, 'vmdel01/second.img', 'es-922');
      const r = await s.stream('DELETE', '/api/vm/vmdel01/define/');
      expect(r.status).toBe(201);
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ status: 'SUCCESS', result: { returncode: 0, message: 'Server definition successfully deleted' } });
      for (const f of [join(root, `${uuid}-disk0`), join(root, 'vmdel01/second.img'), snap0, snap1]) expect(existsSync(f), f).toBe(false);
      for (const t of ['vm_disk', 'snapshot', 'snapshot_define'] as const) expect(await rows(t, uuid), t).toBe(0);
      expect((await s.req('GET', '/api/vm/vmdel01/define')).status).toBe(404);
      const tasks = await s.runtime.ctx.db.selectFrom('task').selectAll().where('vm_uuid', '=', uuid).where('kind', '=', 'vm_delete').execute();
      expect(tasks).toHaveLength(1);
      expect(JSON.parse(tasks[0]!.payload)).toEqual({
        op: 'disk_delete',
        items: [
          { storage: 'default', disk: { path: `${uuid}-disk0` } },
          { storage: 'default', disk: { path: 'vmdel01/second.img' } },
        ],
      });
    });

    it('refuses a VM delete while a disk lock is held, changing nothing', async () => {
      const uuid = await newVm('vmdel02');
      await s.req('POST', '/api/vm/vmdel02/define/disk/1', { body: { size: 1 } });
      const db = s.runtime.ctx.db;
      await db.insertInto('task_lock').values({ key: `vm_snapshot vm:${uuid} disk:0`, task_id: 'x', created: new Date().toISOString() }).execute();
      try {
        const r = await s.req('DELETE', '/api/vm/vmdel02/define');
        expect(r.status).toBe(400);
        expect(r.body).toMatchObject({ status: 'FAILURE', result: 'Task did not acquire lock' });
        expect(await rows('vm_disk', uuid)).toBe(1);
        expect(existsSync(join(root, `${uuid}-disk0`))).toBe(true);
      } finally {
        await db.deleteFrom('task_lock').where('task_id', '=', 'x').execute();
      }
      const running = await s.req('PUT', '/api/vm/vmdel02/status/start');
      expect(running.status).toBe(200);
      const refused = await s.req('DELETE', '/api/vm/vmdel02/define');
      expect(refused.status).toBe(423);
      expect(refused.body).toEqual({ detail: 'VM is not stopped' });
    });

    it('adopts an image that already exists at the path', async () => {
      const uuid = await newVm('adopt01');
      await mkdir(join(root, 'pre'), { recursive: true });
      await writeFile(join(root, 'pre/existing.img'), Buffer.alloc(4096, 1));
      const r = await s.req('POST', '/api/vm/adopt01/define/disk/1', { body: { size: 1, path: 'pre/existing.img' } });
      expect(r.status).toBe(201);
      expect((await stat(join(root, 'pre/existing.img'))).size).toBe(4096);
      expect(await rows('vm_disk', uuid)).toBe(1);
    });
  });
});
