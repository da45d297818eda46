/**
 * Wire compatibility, second pass (issue 19): each case is what Danube's own source answers for the
 * same request, or esnap's documented difference (README, "Differences from Danube"). Run on both
 * databases. Cancelling a running task (item 1) has its own file, task.cancel-running.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm, vmOnIdleNode, type VmFixture } from '../helpers/fixtures.js';
import { writeLogs, type LogEntry } from '../../src/tasks/task-log.js';

type Server = TestServer & { cleanup(): Promise<void> };

forEachDb('Danube wire, second pass', (kind) => {
  let s: Server;
  let web: VmFixture;
  beforeAll(async () => {
    s = await withServer(kind);
    web = await makeVm(s, 'web01', { disks: [1, 1] });
    await makeVm(s, 'web02', { disks: [1] });
    await vmOnIdleNode(s, 'idle01');
    for (const name of ['bbb', 'aaa', 'ccc']) expect((await s.stream('POST', `/api/vm/web01/snapshot/${name}/`, { body: {} })).finalStatus).toBe(200);
  });
  afterAll(async () => s.cleanup());

  describe('task log (item 2)', () => {
    it('writes two rows per task: PENDING with the request detail, then the result detail ("" for a create); task_type is an integer', async () => {
      const r = await s.stream('POST', '/api/vm/web01/snapshot/logged/', { body: { disk_id: 2 } });
      const id = r.headers['es_task_id'];
      const rows = (await s.req('GET', '/api/task/log/')).body.results.filter((e: { task: string }) => e.task === id);
      expect(rows.map((e: Record<string, unknown>) => [e['status'], e['detail'], e['task_type']])).toEqual([
        ['SUCCESS', '', 1],
        ['PENDING', "snapname='logged', disk_id=2, type=2, fsfreeze=false", 1],
      ]);
      // A DC-unbound task (node-level sync) is 101; a failure carries the result's detail.
      const sync = await s.stream('PUT', `/api/node/${s.node}/storage/default/snapshot/`, { body: {} });
      expect(sync.finalStatus).toBe(200);
      const syncRows = (await s.req('GET', '/api/task/log/')).body.results.filter((e: { task: string }) => e.task === sync.headers['es_task_id']);
      expect(syncRows.map((e: { task_type: number }) => e.task_type)).toEqual([101, 101]);
    });

    it('pages with absolute links built from the request, previous null on page 2, and 404 Invalid page. past the end', async () => {
      const base = { userId: 1, username: 'admin', ownerId: 1, dcId: 1, msg: 'Paging', object: { type: 'vm', name: 'pager', alias: 'pager', pk: 'x' } };
      const entries: LogEntry[] = Array.from({ length: 250 }, (_, i) => ({
        ...base,
        time: new Date(Date.UTC(2020, 0, 1, 0, 0, i)).toISOString(),
        taskId: `1e1d1-${String(i).padStart(8, '0')}-0000-0000-0000`,
        taskType: 'e',
        status: 'SUCCESS',
        detail: `n=${i}`,
      }));
      await writeLogs(s.runtime.ctx.db, entries);
      const page = (n: string) => s.req('GET', '/api/task/log/', { query: { status: 'SUCCESS', page: n, object_name: 'pager' } });
      const p1 = await page('1');
      expect(p1.body.count).toBe(250);
      expect(p1.body.next).toBe(`${s.url}/api/task/log/?object_name=pager&page=2&status=SUCCESS`);
      expect(p1.body.previous).toBeNull();
      const p2 = await page('2');
      expect(p2.body.previous).toBeNull();
      expect(p2.body.next).toBe(`${s.url}/api/task/log/?object_name=pager&page=3&status=SUCCESS`);
      const p3 = await page('3');
      expect(p3.body.results).toHaveLength(50);
      expect(p3.body.next).toBeNull();
      expect(p3.body.previous).toBe(`${s.url}/api/task/log/?object_name=pager&page=2&status=SUCCESS`);
      for (const bad of ['4', '0', 'x']) {
        const r = await page(bad);
        expect([r.status, r.body]).toEqual([404, { detail: 'Invalid page.' }]);
      }
    });

    it('builds the links from ESNAP_PUBLIC_URL when it is set', async () => {
      const p = await withServer(kind, { publicUrl: 'https://esnap.example/' });
      try {
        const object = { type: 'vm', name: 'pub', alias: 'pub', pk: 'x' };
        const entries: LogEntry[] = Array.from({ length: 101 }, (_, i) => ({
          time: new Date(Date.UTC(2020, 0, 1, 0, 0, i)).toISOString(),
          taskId: `1e1d1-${String(i).padStart(8, '0')}-0000-0000-0000`,
          taskType: 'e', status: 'SUCCESS', userId: 1, username: 'admin', ownerId: 1, dcId: 1, msg: 'Paging', detail: '', object,
        }));
        await writeLogs(p.runtime.ctx.db, entries);
        const r = await p.req('GET', '/api/task/log/', { query: { page: '1' } });
        expect(r.body.next).toBe('https://esnap.example/api/task/log/?page=2');
      } finally {
        await p.cleanup();
      }
    });
  });

  describe('restore with the source VM as the target (item 3)', () => {
    it('target_disk_id equal to the source disk is a rollback; another disk of the VM is a restore into it', async () => {
      const [d1, d2] = web.diskPaths as [string, string];
      await writeFile(d1, Buffer.from('self-v1'), { flag: 'r+' });
      expect((await s.stream('POST', '/api/vm/web01/snapshot/self1/', { body: {} })).finalStatus).toBe(200);
      await writeFile(d1, Buffer.from('self-v2'), { flag: 'r+' });
      const roll = await s.stream('PUT', '/api/vm/web01/snapshot/self1/', { body: { target_hostname_or_uuid: 'web01', target_disk_id: 1 } });
      expect(roll.finalStatus).toBe(200);
      expect(roll.final).toEqual({ status: 'SUCCESS', result: { message: 'Snapshot successfully restored', returncode: 0, detail: '' }, task_id: roll.headers['es_task_id'] });
      expect((await readFile(d1)).subarray(0, 7).toString()).toBe('self-v1');
      const rollLog = (await s.req('GET', '/api/task/log/')).body.results.find((e: { task: string; status: string }) => e.task === roll.headers['es_task_id'] && e.status === 'PENDING');
      expect(rollLog.detail).toBe("snapname='self1', disk_id=1");

      await writeFile(d1, Buffer.from('self-v3'), { flag: 'r+' });
      await writeFile(d2, Buffer.from('other-0'), { flag: 'r+' });
      const restore = await s.stream('PUT', '/api/vm/web01/snapshot/self1/', { body: { target_hostname_or_uuid: 'web01', target_disk_id: 2 } });
      expect(restore.finalStatus).toBe(200);
      expect((await readFile(d2)).subarray(0, 7).toString()).toBe('self-v1');
      expect((await readFile(d1)).subarray(0, 7).toString()).toBe('self-v3');
      expect((restore.final as { result: { detail: string } }).result.detail).toMatch(/^rc=0, time_elapsed=\d+$/);
    });
  });

  describe('empty filters (item 4)', () => {
    it('follows Danube per filter: empty define, type, order_by and vm are no filter; empty disk_id is 412', async () => {
      const all = (await s.req('GET', '/api/vm/web01/snapshot/')).body.result;
      expect(all.length).toBeGreaterThanOrEqual(3);
      for (const key of ['define', 'type', 'order_by']) {
        const r = await s.req('GET', '/api/vm/web01/snapshot/', { query: { [key]: '' } });
        expect([key, r.status, r.body.result]).toEqual([key, 200, all]);
      }
      expect((await s.req('GET', '/api/vm/web01/snapshot/', { query: { define: 'nothing' } })).body.result).toEqual([]);
      const disk = await s.req('GET', '/api/vm/web01/snapshot/', { query: { disk_id: '' } });
      expect([disk.status, disk.body]).toEqual([412, { detail: 'Invalid disk_id' }]);
      const node = `/api/node/${s.node}/storage/default/snapshot/`;
      const nodeAll = (await s.req('GET', node)).body.result;
      expect(nodeAll.length).toBeGreaterThanOrEqual(all.length);
      for (const key of ['vm', 'define', 'type', 'order_by']) expect([key, (await s.req('GET', node, { query: { [key]: '' } })).body.result]).toEqual([key, nodeAll]);
      expect((await s.req('GET', node, { query: { disk_id: '' } })).body).toEqual({ detail: 'Invalid disk_id' });
      // Task log: an empty `page` is the unpaged form; empty filters and order_by filter nothing.
      const cached = await s.req('GET', '/api/task/log/', { query: { page: '', status: '', object_name: '', order_by: '', date_from: '' } });
      expect([cached.status, Object.keys(cached.body)]).toEqual([200, ['results']]);
      expect(cached.body.results).toEqual((await s.req('GET', '/api/task/log/')).body.results);
    });
  });

  describe('task permissions (item 5)', () => {
    it("another user cancelling the admin's task and a garbage id are 403 Permission denied; an unknown well-formed id is 404", async () => {
      const r = await s.req('POST', '/api/vm/idle01/snapshot/perm/', { body: {} });
      const id = r.body.task_id as string;
      const other = await makeUser(s, 'other-canceller');
      const c = await s.req('PUT', `/api/task/${id}/cancel/`, { key: other.key, body: {} });
      expect([c.status, c.body]).toEqual([403, { detail: 'Permission denied' }]);
      const g = await s.req('PUT', '/api/task/garbage/cancel/', { body: {} });
      expect([g.status, g.body]).toEqual([403, { detail: 'Permission denied' }]);
      const z = await s.req('GET', '/api/task/1e1d1-ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ/status/');
      expect([z.status, z.body]).toEqual([404, { detail: 'Task does not exist (anymore)' }]);
      const mine = await s.req('PUT', `/api/task/${id}/cancel/`, { body: {} });
      expect([mine.status, mine.body]).toEqual([410, { status: 'REVOKED', result: 'terminated', task_id: id }]);
    });
  });

  describe('order_by with an encoded + (item 6)', () => {
    it('sorts descending like Danube; a literal + (a space) sorts ascending', async () => {
      const names = (q: string) => s.req('GET', `/api/vm/web01/snapshot/?disk_id=1&order_by=${q}`).then((r) => r.body.result.filter((n: string) => n.length === 3));
      expect(await names('%2Bname')).toEqual(['ccc', 'bbb', 'aaa']);
      expect(await names('+name')).toEqual(['aaa', 'bbb', 'ccc']);
    });
  });

  describe('disk_id 1.5 on create (item 7)', () => {
    it('is 400 FAILURE Enter a whole number.', async () => {
      const r = await s.req('POST', '/api/vm/web01/snapshot/half/', { body: { disk_id: 1.5 } });
      expect([r.status, r.body.status, r.body.result]).toEqual([400, 'FAILURE', { disk_id: ['Enter a whole number.'] }]);
      expect((await s.req('GET', '/api/vm/web01/snapshot/half/')).status).toBe(404);
      // A string that is not a whole number is Danube's 412, as before.
      expect((await s.req('POST', '/api/vm/web01/snapshot/half/', { body: { disk_id: '1.5' } })).body).toEqual({ detail: 'Invalid disk_id' });
    });
  });

  describe('restore into another VM (item 8)', () => {
    it('ends with detail rc=0, time_elapsed=N in the result and the task log', async () => {
      const r = await s.stream('PUT', '/api/vm/web01/snapshot/aaa/', { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1, disk_id: 1 } });
      expect(r.finalStatus).toBe(200);
      const detail = (r.final as { result: { detail: string } }).result.detail;
      expect(detail).toMatch(/^rc=0, time_elapsed=\d+$/);
      const rows = (await s.req('GET', '/api/task/log/')).body.results.filter((e: { task: string }) => e.task === r.headers['es_task_id']);
      expect(rows[0]).toMatchObject({ status: 'SUCCESS', detail });
    });
  });

  describe('key order (item 9)', () => {
    it('task status, result, done, pending details, definition errors and 412 order_by messages', async () => {
      const done = await s.stream('POST', '/api/vm/web01/snapshot/keys/', { body: {} });
      const id = done.headers['es_task_id'];
      const st = await s.req('GET', `/api/task/${id}/status/`);
      expect(Object.keys(st.body)).toEqual(['status', 'result', 'task_id']);
      expect(Object.keys(st.body.result)).toEqual(['message', 'returncode', 'detail']);
      expect(Object.keys((await s.req('GET', `/api/task/${id}/done/`)).body)).toEqual(['done', 'task_id']);
      const pending = await s.req('POST', '/api/vm/idle01/snapshot/keys/', { body: {} });
      const details = await s.req('GET', `/api/task/${pending.body.task_id}/`);
      expect(Object.keys(details.body)).toEqual(['task_id', 'hostname', 'snapname', 'disk_id', 'time', 'method', 'view']);
      await s.req('PUT', `/api/task/${pending.body.task_id}/cancel/`, { body: {} });
      const def = await s.req('POST', '/api/vm/web01/define/snapshot/bad/', { body: { schedule: 'nope', retention: 'x' } });
      expect(def.status).toBe(400);
      expect(Object.keys(def.body.result)).toEqual(['retention', 'schedule']);
      const snapOrder = await s.req('GET', '/api/vm/web01/snapshot/', { query: { order_by: 'x' } });
      expect(snapOrder.body).toEqual({ detail: 'Invalid order_by; Possible sort fields are: hostname, created, name, disk_id, size' });
      const defOrder = await s.req('GET', '/api/vm/define/snapshot/', { query: { order_by: 'x' } });
      expect(defOrder.body).toEqual({ detail: 'Invalid order_by; Possible sort fields are: hostname, name, disk_id, created' });
    });
  });

  describe('non-JSON bodies (item 10, a documented difference)', () => {
    it('keeps 400 for an unparsable body and 415 for a form, where Danube would read {} and roll back', async () => {
      const bad = await s.req('PUT', '/api/vm/web01/snapshot/aaa/', { rawBody: '{"note": ', headers: { 'Content-Type': 'application/json' } });
      expect(bad.status).toBe(400);
      expect(bad.body.detail).toMatch(/^JSON parse error - /);
      const form = await s.req('PUT', '/api/vm/web01/snapshot/aaa/', { rawBody: 'note=x', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
      expect(form.status).toBe(415);
      expect((await s.req('GET', '/api/vm/web01/snapshot/aaa/')).body.result.status).toBe(1);
    });
  });
});
