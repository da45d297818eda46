/**
 * Definition lists (spec 4.1, 4.2): names or objects, `full` and `extended` (parsed as proper
 * booleans, esnap's decision), `order_by`, the `disk_id` filter and who sees what.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { addSnapshot, addUser, addVm, defineRow, DEFINE_KEYS, EXTENDED_KEYS } from './fixtures.js';

type Server = TestServer & { cleanup(): Promise<void> };

forEachDb('definitions: lists', (kind) => {
  let s: Server;
  let user: { id: number; key: string };
  let vmB: string;
  const all = '/api/vm/define/snapshot';

  // Created in this order (ids grow): b.test/alpha(d1), a.test/zulu(d1), b.test/mid(d2), c.test/alpha(d1)
  beforeAll(async () => {
    s = await withServer(kind);
    user = await addUser(s, 'alice');
    vmB = await addVm(s, 'b.test', { disks: 2 });
    await addVm(s, 'a.test');
    await addVm(s, 'c.test', { owner: user.id });
    const body = { schedule: '0 1 * * *', retention: 1 };
    for (const [vm, name, disk] of [
      ['b.test', 'alpha', 1],
      ['a.test', 'zulu', 1],
      ['b.test', 'mid', 2],
      ['c.test', 'alpha', 1],
    ] as const) {
      const r = await s.req('POST', `/api/vm/${vm}/define/snapshot/${name}`, { body: { ...body, disk_id: disk } });
      expect(r.status).toBe(201);
    }
    const alpha = await defineRow(s, vmB, 'alpha');
    await addSnapshot(s, vmB, alpha!.id, 'alpha-1', 1);
    await addSnapshot(s, vmB, alpha!.id, 'alpha-2', 2);
    await addSnapshot(s, vmB, alpha!.id, 'alpha-3', 4);
  });
  afterAll(() => s.cleanup());

  const pairs = (result: Array<{ hostname: string; name: string }>) => result.map((o) => `${o.hostname}/${o.name}`);

  it('lists names by default, ordered by hostname then newest first', async () => {
    const r = await s.req('GET', all);
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('SUCCESS');
    expect(r.body.result).toEqual(['zulu', 'mid', 'alpha', 'alpha']);
    const f = await s.req('GET', `${all}/`, { query: { full: 'true' } });
    expect(pairs(f.body.result)).toEqual(['a.test/zulu', 'b.test/mid', 'b.test/alpha', 'c.test/alpha']);
    for (const o of f.body.result) expect(Object.keys(o)).toEqual(DEFINE_KEYS);
    expect(f.body.result[1].disk_id).toBe(2);
  });

  it('extended forces objects with the snapshot count; "false" means false', async () => {
    const x = await s.req('GET', all, { query: { extended: '1' } });
    for (const o of x.body.result) expect(Object.keys(o)).toEqual(EXTENDED_KEYS);
    expect(x.body.result.map((o: { snapshots: number }) => o.snapshots)).toEqual([0, 0, 3, 0]);
    expect((await s.req('GET', all, { query: { extended: 'false' } })).body.result).toEqual(['zulu', 'mid', 'alpha', 'alpha']);
    const fx = await s.req('GET', all, { query: { full: 'true', extended: 'false' } });
    for (const o of fx.body.result) expect(Object.keys(o)).toEqual(DEFINE_KEYS);
    expect((await s.req('GET', all, { query: { full: 'no' } })).body.result[0]).toHaveProperty('name');
    expect((await s.req('GET', all, { query: { full: '0' } })).body.result).toEqual(['zulu', 'mid', 'alpha', 'alpha']);
  });

  it('order_by takes name, disk_id, hostname, created with - or + (both descending, as Danube)', async () => {
    const order = async (order_by: string) =>
      pairs((await s.req('GET', all, { query: { full: 'true', order_by } })).body.result);
    expect(await order('name,hostname')).toEqual(['b.test/alpha', 'c.test/alpha', 'b.test/mid', 'a.test/zulu']);
    expect(await order('-name,-hostname')).toEqual(['a.test/zulu', 'b.test/mid', 'c.test/alpha', 'b.test/alpha']);
    expect(await order('created')).toEqual(['b.test/alpha', 'a.test/zulu', 'b.test/mid', 'c.test/alpha']);
    expect(await order('-disk_id,created')).toEqual(['b.test/mid', 'b.test/alpha', 'a.test/zulu', 'c.test/alpha']);
    expect(await order('+hostname, -created')).toEqual(['c.test/alpha', 'b.test/mid', 'b.test/alpha', 'a.test/zulu']);
    // A literal + in a query string is a space: ascending.
    expect(await order(' hostname, -created')).toEqual(['a.test/zulu', 'b.test/mid', 'b.test/alpha', 'c.test/alpha']);
    expect((await s.req('GET', all, { query: { order_by: 'name' } })).body.result).toEqual(['alpha', 'alpha', 'mid', 'zulu']);
  });

  it('an unknown order_by field is 412 with the possible fields', async () => {
    for (const order_by of ['size', 'name,', 'hostname,-', '--name', 'id']) {
      const r = await s.req('GET', all, { query: { order_by } });
      expect(r.status, order_by).toBe(412);
      expect(r.body).toEqual({ detail: 'Invalid order_by; Possible sort fields are: hostname, name, disk_id, created' });
    }
    const v = await s.req('GET', '/api/vm/b.test/define/snapshot', { query: { order_by: 'bogus' } });
    expect(v.status).toBe(412);
  });

  it("a VM's list, with the disk_id filter", async () => {
    const base = '/api/vm/b.test/define/snapshot';
    expect((await s.req('GET', base)).body.result).toEqual(['mid', 'alpha']);
    expect((await s.req('GET', base, { query: { disk_id: '2' } })).body.result).toEqual(['mid']);
    expect((await s.req('GET', base, { query: { disk_id: '1', full: 'true' } })).body.result.map((o: { name: string }) => o.name)).toEqual([
      'alpha',
    ]);
    const x = await s.req('GET', `${base}/`, { query: { extended: 'true', order_by: 'name' } });
    expect(x.body.result.map((o: { snapshots: number }) => o.snapshots)).toEqual([3, 0]);
    expect((await s.req('GET', '/api/vm/a.test/define/snapshot', { query: { full: 'true', disk_id: '1' } })).body.result).toHaveLength(1);
    for (const disk_id of ['3', '0', 'x', '']) {
      const r = await s.req('GET', base, { query: { disk_id } });
      expect(r.status, disk_id).toBe(412);
      expect(r.body).toEqual({ detail: 'Invalid disk_id' });
    }
    const none = await s.req('GET', '/api/vm/nope.test/define/snapshot');
    expect(none.status).toBe(404);
    expect(none.body).toEqual({ detail: 'VM not found' });
  });

  it('a VM with no definitions lists nothing, also as objects', async () => {
    await addVm(s, 'empty.test');
    expect((await s.req('GET', '/api/vm/empty.test/define/snapshot')).body.result).toEqual([]);
    expect((await s.req('GET', '/api/vm/empty.test/define/snapshot', { query: { full: 'true' } })).body.result).toEqual([]);
  });

  it('non-admins list only the definitions of their own VMs', async () => {
    const r = await s.req('GET', all, { key: user.key, query: { full: 'true' } });
    expect(r.status).toBe(200);
    expect(pairs(r.body.result)).toEqual(['c.test/alpha']);
    expect(r.body.task_id).toMatch(new RegExp(`^${user.id}d${user.id}d\\d+-`));
    const own = await s.req('GET', '/api/vm/c.test/define/snapshot', { key: user.key });
    expect(own.body.result).toEqual(['alpha']);
    const other = await s.req('GET', '/api/vm/b.test/define/snapshot', { key: user.key });
    expect(other.status).toBe(404);
    expect(other.body).toEqual({ detail: 'VM not found' });
  });

  it('a DC admin sees every VM', async () => {
    const bob = await addUser(s, 'bob');
    const dc = await s.runtime.ctx.db.selectFrom('dc').select('id').where('name', '=', 'main').executeTakeFirstOrThrow();
    await s.runtime.ctx.db.insertInto('dc_admin').values({ dc_id: dc.id, user_id: bob.id }).execute();
    expect((await s.req('GET', all, { key: bob.key })).body.result).toHaveLength(4);
  });
});
