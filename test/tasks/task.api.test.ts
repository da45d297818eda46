import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, startTestServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm, vmOnIdleNode } from '../helpers/fixtures.js';

forEachDb('task API', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind);
    await makeVm(s, 'web01');
    await vmOnIdleNode(s, 'idle01');
  });
  afterAll(async () => s.cleanup());

  it('lists pending tasks, shows one, and cancels it with the failure cleanup', async () => {
    const r = await s.req('POST', '/api/vm/idle01/snapshot/waiting/', { body: {} });
    expect(r.status).toBe(201);
    const id = r.body.task_id as string;
    expect((await s.req('GET', '/api/task/')).body).toContain(id);
    const d = await s.req('GET', `/api/task/${id}/`);
    expect(d.status).toBe(200);
    expect(d.body).toMatchObject({ view: 'vm_snapshot', method: 'POST', hostname: 'idle01', disk_id: 1, snapname: 'waiting', task_id: id });
    expect(d.body.time).toMatch(/\+00:00$/);
    const st = await s.req('GET', `/api/task/${id}/status/`);
    expect(st.status).toBe(201);
    expect(st.body).toEqual({ task_id: id, status: 'PENDING', result: null });
    expect((await s.req('GET', `/api/task/${id}/done/`)).body).toEqual({ task_id: id, done: false });
    const vmStatus = await s.req('GET', '/api/vm/idle01/status/');
    expect(Object.keys(vmStatus.body.result.tasks)).toEqual([id]);
    // Another operation on the same disk is refused while the task holds the lock.
    expect((await s.req('POST', '/api/vm/idle01/snapshot/second/', { body: {} })).body.result).toBe('Task did not acquire lock');
    const c = await s.req('PUT', `/api/task/${id}/cancel/`, { body: {} });
    expect(c.status).toBe(410);
    expect(c.body).toEqual({ task_id: id, status: 'REVOKED', result: 'terminated' });
    expect((await s.req('GET', '/api/vm/idle01/snapshot/')).body.result).toEqual([]);
    expect((await s.req('GET', `/api/task/${id}/`)).body).toEqual({ detail: 'Task does not exist' });
    expect((await s.req('PUT', `/api/task/${id}/cancel/`, { body: {} })).body).toEqual({ detail: 'Task cannot be canceled' });
    // The lock is free again.
    const again = await s.req('POST', '/api/vm/idle01/snapshot/second/', { body: {} });
    expect(again.status).toBe(201);
    await s.req('PUT', `/api/task/${again.body.task_id}/cancel/`, { body: {} });
  });

  it('answers 404 for dummy and unknown ids and 403 for malformed ones or other users', async () => {
    const g = await s.req('GET', '/api/vm/web01/snapshot/');
    expect((await s.req('GET', `/api/task/${g.body.task_id}/status/`)).body).toEqual({ detail: 'Task does not exist (anymore)' });
    expect((await s.req('GET', '/api/task/1e1d1-00000000-0000-0000-0000/status/')).status).toBe(404);
    expect((await s.req('GET', '/api/task/garbage/status/')).body).toEqual({ detail: 'Permission denied' });
    const u = await makeUser(s, 'stranger');
    const r = await s.stream('POST', '/api/vm/web01/snapshot/mine/', { body: {} });
    const id = r.final && (r.headers['es_task_id'] as string);
    expect((await s.req('GET', `/api/task/${id}/status/`, { key: u.key })).body).toEqual({ detail: 'Permission denied' });
    expect((await s.req('GET', `/api/task/${id}/status/`)).status).toBe(200);
  });

  it('keeps a task log with filters and paging', async () => {
    const all = await s.req('GET', '/api/task/log/');
    expect(all.status).toBe(200);
    expect(all.body.results.length).toBeGreaterThan(0);
    expect(Object.keys(all.body.results[0])).toEqual(['time', 'task', 'status', 'username', 'msg', 'detail', 'object_name', 'object_alias', 'object_type', 'flag', 'task_type']);
    // Two rows per task, as Danube: PENDING with the request's detail, then SUCCESS with the result's ("" for a create).
    const created = all.body.results.find((e: { detail: string }) => e.detail.includes("snapname='mine'"));
    expect(created).toMatchObject({ status: 'PENDING', msg: "Create snapshot of server's disk", object_type: 'vm', object_name: 'web01', flag: 1, task_type: 1 });
    const ended = all.body.results.filter((e: { task: string }) => e.task === created.task);
    expect(ended.map((e: { status: string; detail: string }) => [e.status, e.detail])).toEqual([['SUCCESS', ''], ['PENDING', created.detail]]);
    const revoked = await s.req('GET', '/api/task/log/', { query: { status: 'REVOKED' } });
    expect(revoked.body.results.every((e: { status: string }) => e.status === 'REVOKED')).toBe(true);
    expect(revoked.body.results.length).toBeGreaterThanOrEqual(1);
    const page = await s.req('GET', '/api/task/log/', { query: { page: '1', object_name: 'web01' } });
    expect(Object.keys(page.body)).toEqual(['count', 'next', 'previous', 'results']);
    expect(page.body.count).toBe(page.body.results.length);
    expect(page.body.results[0].time).toMatch(/Z$/);
    expect(page.body.results.every((e: { object_name: string }) => e.object_name === 'web01')).toBe(true);
    expect((await s.req('GET', '/api/task/log/', { query: { page: '99' } })).status).toBe(404);
    expect((await s.req('GET', '/api/task/log/', { query: { order_by: 'msg' } })).status).toBe(412);
    const future = await s.req('GET', '/api/task/log/', { query: { date_from: '2999-01-01' } });
    expect(future.body.results).toEqual([]);
  });
});

forEachDb('restart keeps pending tasks', (kind) => {
  it('runs a task accepted while no agent ran exactly once after the next start', async () => {
    type Restartable = TestServer & { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string }; destroy(): Promise<void> };
    const first = (await startTestServer(kind)) as Restartable;
    await makeVm(first, 'web01');
    await first.close();
    // A server without an agent accepts the task and persists it; nobody works it.
    const noAgent = (await startTestServer(kind, { reuse: first.dbInfo, localAgent: false })) as Restartable;
    const r = await noAgent.req('POST', '/api/vm/web01/snapshot/survivor/', { body: {} });
    expect(r.status).toBe(201);
    await noAgent.close();
    const third = (await startTestServer(kind, { reuse: first.dbInfo })) as Restartable;
    try {
      let st = await third.req('GET', `/api/task/${r.body.task_id}/status/`);
      for (let i = 0; i < 200 && st.status === 201; i++) {
        await new Promise((res) => setTimeout(res, 20));
        st = await third.req('GET', `/api/task/${r.body.task_id}/status/`);
      }
      expect(st.status).toBe(200);
      const rows = await third.runtime.ctx.db.selectFrom('snapshot').selectAll().where('name', '=', 'survivor').execute();
      expect(rows).toHaveLength(1);
      expect(rows[0]!.status).toBe(1);
      const log = await third.runtime.ctx.db.selectFrom('task_log').selectAll().where('task_id', '=', r.body.task_id).execute();
      expect(log.sort((a, b) => a.id - b.id).map((e) => e.status)).toEqual(['PENDING', 'SUCCESS']);
    } finally {
      await third.close();
      await third.destroy();
    }
  });
});

forEachDb('ES-STREAM timeout', (kind) => {
  it('keeps the stream alive with spaces and ends with a proper 201 status line at the timeout', async () => {
    const s = await withServer(kind, { streamTimeoutS: 2.5 });
    try {
      await vmOnIdleNode(s, 'idle02');
      const t0 = Date.now();
      const r = await s.req('POST', '/api/vm/idle02/snapshot/slow/', { body: {}, headers: { 'ES-STREAM': 'es' } });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2400);
      expect(r.status).toBe(201);
      expect(r.headers['es_stream']).toBe('True');
      expect(r.headers['x-accel-buffering']).toBe('no');
      const m = /^( +)201\n(.*)$/s.exec(r.text);
      expect(m, r.text).not.toBeNull();
      expect(m![1]!.length).toBeGreaterThanOrEqual(2);
      const body = JSON.parse(m![2]!);
      expect(body).toEqual({ task_id: r.headers['es_task_id'], status: 'PENDING', result: null });
      // Any other ES-STREAM value streams without the status line.
      await s.req('PUT', `/api/task/${r.headers['es_task_id']}/cancel/`, { body: {} });
      const other = await s.req('POST', '/api/vm/idle02/snapshot/slow2/', { body: {}, headers: { 'ES-STREAM': 'yes' } });
      expect(other.headers['es_stream']).toBe('True');
      expect(/^ +\{/.test(other.text), other.text).toBe(true);
      expect(JSON.parse(other.text)).toMatchObject({ status: 'PENDING', result: null });
    } finally {
      await s.cleanup();
    }
  }, 30_000);
});
