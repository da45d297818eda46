import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser } from '../helpers/fixtures.js';

const STATUS_KEYS = ['hostname', 'uuid', 'alias', 'status', 'status_change', 'tasks'];
const DANUBE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$/;

forEachDb('VM status', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let alice: { id: number; key: string };
  let uuid: string;
  beforeAll(async () => {
    s = await withServer(kind);
    alice = await makeUser(s, 'alice');
    const r = await s.req('POST', '/api/vm/st01/define', { body: { owner: 'alice', alias: 'st' } });
    uuid = r.body.result.uuid as string;
  });
  afterAll(() => s.cleanup());

  it("shows Danube's status object", async () => {
    const r = await s.req('GET', '/api/vm/st01/status/');
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('SUCCESS');
    expect(Object.keys(r.body.result)).toEqual(STATUS_KEYS);
    expect(r.body.result).toMatchObject({ hostname: 'st01', uuid, alias: 'st', status: 'stopped', tasks: {} });
    expect(r.body.result.status_change).toMatch(DANUBE_TIME);
  });

  it('records start and stop, idempotently, for the owner too', async () => {
    const before = (await s.req('GET', '/api/vm/st01/status')).body.result.status_change as string;
    await new Promise((res) => setTimeout(res, 5));
    const start = await s.req('PUT', '/api/vm/st01/status/start', { key: alice.key });
    expect(start.status).toBe(200);
    expect(start.body.status).toBe('SUCCESS');
    expect(Object.keys(start.body.result)).toEqual(STATUS_KEYS);
    expect(start.body.result.status).toBe('running');
    expect(start.body.result.status_change).not.toBe(before);
    const again = await s.req('PUT', '/api/vm/st01/status/start/', { key: alice.key });
    expect(again.status).toBe(200);
    expect(again.body.result).toEqual(start.body.result);
    expect((await s.req('GET', '/api/vm/st01/define')).body.result.status).toBe('running');
    const stop = await s.req('PUT', '/api/vm/st01/status/stop');
    expect(stop.body.result.status).toBe('stopped');
    const log = await s.runtime.ctx.db
      .selectFrom('task_log')
      .select(['msg', 'username'])
      .where('object_name', '=', 'st01')
      .where('msg', 'in', ['Start server', 'Stop server'])
      .orderBy('id')
      .execute();
    // One entry per change; the repeated start changed nothing.
    expect(log).toEqual([
      { msg: 'Start server', username: 'alice' },
      { msg: 'Stop server', username: 'admin' },
    ]);
  });

  it('hides the VM from other users (404) and refuses other methods (405)', async () => {
    const bob = await makeUser(s, 'bob');
    for (const [method, path] of [
      ['GET', '/api/vm/st01/status'],
      ['PUT', '/api/vm/st01/status/start'],
      ['PUT', '/api/vm/st01/status/stop'],
    ] as const) {
      const r = await s.req(method, path, { key: bob.key });
      expect(r.status, path).toBe(404);
      expect(r.body).toEqual({ detail: 'VM not found' });
    }
    const put = await s.req('PUT', '/api/vm/st01/status');
    expect(put.status).toBe(405);
    expect(put.body).toEqual({ detail: 'Method "PUT" not allowed.' });
    expect((await s.req('GET', '/api/vm/st01/status/start')).status).toBe(405);
  });

  it('keeps a transient state (423) and lists running tasks with their apiview', async () => {
    const db = s.runtime.ctx.db;
    await db.updateTable('vm').set({ status: 7 }).where('uuid', '=', uuid).execute();
    const now = new Date().toISOString();
    const apiview = { view: 'vm_snapshot', method: 'PUT', hostname: 'st01', disk_id: 1, snapname: 's1', time: now.replace('Z', '+00:00') };
    const base = {
      type: 'e',
      kind: 'snapshot_rollback',
      user_id: 1,
      owner_id: alice.id,
      dc_id: 1,
      vm_uuid: uuid,
      node_id: null,
      payload: '{}',
      context: '{}',
      node: s.node,
      result: null,
      log_msg: 'x',
      log_detail: '',
      created: now,
      started: null,
      finished: null,
    };
    await db
      .insertInto('task')
      .values([
        { ...base, id: '1e2d1-aaaaaaaa-0000-4000-8000', apiview: JSON.stringify(apiview), state: 'STARTED' },
        { ...base, id: '1e2d1-bbbbbbbb-0000-4000-8000', apiview: JSON.stringify({ view: 'old' }), state: 'SUCCESS' },
      ])
      .execute();
    try {
      const r = await s.req('GET', '/api/vm/st01/status', { key: alice.key });
      expect(r.body.result.status).toBe('notready');
      expect(r.body.result.tasks).toEqual({ '1e2d1-aaaaaaaa-0000-4000-8000': apiview });
      for (const action of ['start', 'stop']) {
        const refused = await s.req('PUT', `/api/vm/st01/status/${action}`);
        expect(refused.status).toBe(423);
        expect(refused.body).toEqual({ detail: 'VM is not operational' });
      }
      const viaDefine = await s.req('PUT', '/api/vm/st01/define', { body: { status: 'running' } });
      expect(viaDefine.status).toBe(423);
      expect((await s.req('GET', '/api/vm/st01/status')).body.result.status).toBe('notready');
    } finally {
      await db.updateTable('vm').set({ status: 1 }).where('uuid', '=', uuid).execute();
      await db.deleteFrom('task').where('vm_uuid', '=', uuid).execute();
    }
  });

  it('changes the status through define PUT as well', async () => {
    const r = await s.req('PUT', '/api/vm/st01/define', { body: { status: 'running' } });
    expect(r.status).toBe(200);
    expect(r.body.result.status).toBe('running');
    const bad = await s.req('PUT', '/api/vm/st01/define', { body: { status: 'notready' } });
    expect(bad.status).toBe(400);
    expect(bad.body.result).toEqual({ status: ['Select a valid choice. notready is not one of the available choices.'] });
    expect((await s.req('PUT', '/api/vm/st01/status/stop')).body.result.status).toBe('stopped');
  });
});
