/**
 * Who may do what, and the order of checks of spec 4.3: permission (403), module switch (404),
 * VM (404) and its node for writes (423), disk_id (412), definition (404/406), VM status (423).
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { addUser, addVm, defineRow, setDcSettings, setNodeStatus, setVmStatus } from './fixtures.js';

type Server = TestServer & { cleanup(): Promise<void> };

const WRITES = ['POST', 'PUT', 'DELETE'] as const;

forEachDb('definitions: permissions and preconditions', (kind) => {
  let s: Server;
  let user: { id: number; key: string };
  let ownVm: string;
  let vm: string;
  const body = { schedule: '0 2 * * *', retention: 3 };
  const base = '/api/vm/acc.test/define/snapshot';

  beforeAll(async () => {
    s = await withServer(kind);
    user = await addUser(s, 'carol');
    vm = await addVm(s, 'acc.test');
    ownVm = await addVm(s, 'carol.test', { owner: user.id });
    expect((await s.req('POST', `${base}/keep`, { body })).status).toBe(201);
    expect((await s.req('POST', '/api/vm/carol.test/define/snapshot/mine', { body })).status).toBe(201);
  });
  afterAll(() => s.cleanup());
  afterEach(async () => {
    await setDcSettings(s, {});
    await setNodeStatus(s, 2);
    await setVmStatus(s, vm, 2);
  });

  it('a non-admin reads definitions of own VMs but cannot write them (403 first)', async () => {
    const g = await s.req('GET', '/api/vm/carol.test/define/snapshot/mine', { key: user.key });
    expect(g.status).toBe(200);
    expect(g.body.result.vm_uuid).toBe(ownVm);
    expect(g.body.task_id).toMatch(new RegExp(`^${user.id}d${user.id}d\\d+-`));
    for (const m of WRITES) {
      for (const path of ['/api/vm/carol.test/define/snapshot/mine', '/api/vm/nope.test/define/snapshot/x']) {
        const r = await s.req(m, path, { key: user.key, body });
        expect(r.status, `${m} ${path}`).toBe(403);
        expect(r.body).toEqual({ detail: 'Permission denied' });
      }
    }
    expect((await defineRow(s, ownVm, 'mine'))?.retention).toBe(3);
  });

  it("a non-admin gets 404 VM not found for another's VM", async () => {
    const r = await s.req('GET', `${base}/keep`, { key: user.key });
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ detail: 'VM not found' });
  });

  it('a DC admin may write', async () => {
    const dave = await addUser(s, 'dave');
    const dc = await s.runtime.ctx.db.selectFrom('dc').select('id').where('name', '=', 'main').executeTakeFirstOrThrow();
    await s.runtime.ctx.db.insertInto('dc_admin').values({ dc_id: dc.id, user_id: dave.id }).execute();
    const r = await s.req('POST', `${base}/dave`, { key: dave.key, body });
    expect(r.status).toBe(201);
    // The dummy id names the VM's owner (user 1), not the caller.
    expect(r.body.task_id).toMatch(new RegExp(`^${dave.id}d1d\\d+-`));
    const log = await s.runtime.ctx.db.selectFrom('task_log').selectAll().where('detail', 'like', "%snapdef='dave'%").executeTakeFirstOrThrow();
    expect(log.username).toBe('dave');
    expect(log.owner_id).toBe(1);
  });

  it('the module switch answers 404 Not found everywhere, after the permission check', async () => {
    await setDcSettings(s, { VMS_VM_SNAPSHOT_ENABLED: false });
    const cases: Array<[string, string]> = [
      ['GET', '/api/vm/define/snapshot'],
      ['GET', `${base}`],
      ['GET', `${base}/keep`],
      ['GET', '/api/vm/nope.test/define/snapshot/keep'],
      ['POST', `${base}/new`],
      ['PUT', `${base}/keep`],
      ['DELETE', `${base}/keep`],
    ];
    for (const [m, path] of cases) {
      const r = await s.req(m, path, { body: m === 'GET' ? undefined : body });
      expect(r.status, `${m} ${path}`).toBe(404);
      expect(r.body).toEqual({ detail: 'Not found' });
    }
    const denied = await s.req('POST', '/api/vm/carol.test/define/snapshot/mine', { key: user.key, body });
    expect(denied.status).toBe(403);
    expect(await defineRow(s, vm, 'new')).toBeUndefined();
    expect(await defineRow(s, vm, 'keep')).toBeDefined();
  });

  it('writes need the node online (423), after the VM lookup and before disk_id; reads do not', async () => {
    await setNodeStatus(s, 1);
    for (const m of WRITES) {
      const r = await s.req(m, `${base}/keep`, { body: { ...body, disk_id: 9 } });
      expect(r.status, m).toBe(423);
      expect(r.body).toEqual({ detail: 'Node is not operational' });
    }
    const missing = await s.req('POST', '/api/vm/nope.test/define/snapshot/x', { body });
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ detail: 'VM not found' });
    expect((await s.req('GET', `${base}/keep`)).status).toBe(200);
    await setNodeStatus(s, 3);
    expect((await s.req('PUT', `${base}/keep`, { body: { desc: 'x' } })).status).toBe(423);
  });

  it('disk_id is checked before the definition lookup', async () => {
    for (const m of ['GET', ...WRITES]) {
      const r = await s.req(m, `${base}/nothere`, m === 'GET' ? { query: { disk_id: '2' } } : { body: { ...body, disk_id: 2 } });
      expect(r.status, m).toBe(412);
      expect(r.body).toEqual({ detail: 'Invalid disk_id' });
    }
  });

  it('writes need an operational VM (423), checked after the definition lookup', async () => {
    await setVmStatus(s, vm, 7);
    const post = await s.req('POST', `${base}/new`, { body });
    expect(post.status).toBe(423);
    expect(post.body).toEqual({ detail: 'VM is not operational' });
    for (const m of ['PUT', 'DELETE']) {
      const r = await s.req(m, `${base}/keep`, { body: { desc: 'x' } });
      expect(r.status, m).toBe(423);
      expect(r.body).toEqual({ detail: 'VM is not operational' });
    }
    expect((await s.req('POST', `${base}/keep`, { body })).status).toBe(406);
    expect((await s.req('PUT', `${base}/nothere`, { body })).status).toBe(404);
    expect((await s.req('GET', `${base}/keep`)).status).toBe(200);
    expect(await defineRow(s, vm, 'new')).toBeUndefined();
    expect((await defineRow(s, vm, 'keep'))?.desc).toBe('');
    for (const status of [1, 3]) {
      await setVmStatus(s, vm, status);
      expect((await s.req('PUT', `${base}/keep`, { body: { desc: `s${status}` } })).status).toBe(200);
    }
  });

  it('OPTIONS describes the view; other methods are 405', async () => {
    const o = await s.req('OPTIONS', `${base}/keep`);
    expect(o.status).toBe(200);
    expect(o.body.name).toBe('vm_define_snapshot');
    const list = await s.req('POST', '/api/vm/define/snapshot', { body: {} });
    expect(list.status).toBe(405);
    expect(list.body).toEqual({ detail: 'Method "POST" not allowed.' });
  });
});
