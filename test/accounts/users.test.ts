/**
 * Users over real HTTP on both databases: CRUD, write-only secrets stored hashed, permissions,
 * self-service, the last-super-admin guard, `_system` being invisible, VM owners kept.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';

const USER_KEYS = ['username', 'email', 'is_super_admin', 'api_access', 'is_active', 'current_dc'];

forEachDb('accounts: users', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind);
  });
  afterAll(() => s.cleanup());

  const row = (username: string) => s.runtime.ctx.db.selectFrom('account').selectAll().where('username', '=', username).executeTakeFirst();

  it('creates a user with defaults and never returns secrets', async () => {
    const r = await s.req('POST', '/api/accounts/user/bob/', {
      body: { password: 'bob-password', api_key: 'bob-api-key-0123456789', email: 'bob@example.com', unknown: 1 },
    });
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('SUCCESS');
    expect(r.body.task_id).toMatch(/^1d1u\d+-/);
    expect(Object.keys(r.body.result)).toEqual(USER_KEYS);
    expect(r.body.result).toEqual({
      username: 'bob', email: 'bob@example.com', is_super_admin: false, api_access: true, is_active: true, current_dc: 'main',
    });
    expect(r.text).not.toContain('bob-password');
    expect(r.text).not.toContain('bob-api-key');

    const stored = await row('bob');
    expect(stored!.password_hash).toMatch(/^scrypt\$/);
    expect(stored!.password_hash).not.toContain('bob-password');
    expect(stored!.api_key_hash).toMatch(/^[0-9a-f]{64}$/);

    const me = await s.req('GET', '/api/accounts/user/bob/', { key: 'bob-api-key-0123456789' });
    expect(me.status).toBe(200);
    expect(me.body.result.username).toBe('bob');
    expect(me.text).not.toContain('hash');

    const log = await s.runtime.ctx.db.selectFrom('task_log').selectAll().where('object_name', '=', 'bob').execute();
    expect(log.map((l) => [l.msg, l.object_type, l.status, l.flag])).toEqual([['Create user', 'user', 'SUCCESS', 1]]);
    expect(log[0]!.detail).toBe("email='bob@example.com', password='***', api_key='***'");
  });

  it('lists users, hiding _system', async () => {
    const r = await s.req('GET', '/api/accounts/user/');
    expect(r.status).toBe(200);
    expect(r.body.result).toEqual(['admin', 'bob']);
    const full = await s.req('GET', '/api/accounts/user/', { query: { full: 'true' } });
    expect(full.body.result.map((u: { username: string }) => u.username)).toEqual(['admin', 'bob']);
    expect(Object.keys(full.body.result[0])).toEqual(USER_KEYS);
    expect((await s.req('GET', '/api/accounts/user/', { query: { full: 'false' } })).body.result).toEqual(['admin', 'bob']);
  });

  it('validates fields and names', async () => {
    const exists = await s.req('POST', '/api/accounts/user/bob/', { body: {} });
    expect(exists.status).toBe(406);
    expect(exists.body).toEqual({ detail: 'User already exists' });

    const bad = await s.req('POST', '/api/accounts/user/-carol/', {
      body: { password: 'abc', api_key: 'short', email: 'nope', current_dc: 'nowhere', is_active: 'no' },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.status).toBe('FAILURE');
    expect(bad.body.result).toEqual({
      username: ['Invalid value.'],
      email: ['Enter a valid email address.'],
      current_dc: ['Object with name=nowhere does not exist.'],
      password: ['Ensure this value has at least 6 characters (it has 3).'],
      api_key: ['Ensure this value has at least 16 characters (it has 5).'],
    });
    expect(await row('-carol')).toBeUndefined();

    // The router's maxParamLength (200) is below the 254 of the rule: the longest reachable name works.
    const long = await s.req('POST', `/api/accounts/user/${'a'.repeat(200)}/`, { body: {} });
    expect(long.status).toBe(201);
    expect((await s.req('DELETE', `/api/accounts/user/${'a'.repeat(200)}/`)).status).toBe(200);

    const typed = await s.req('POST', '/api/accounts/user/carol/', { body: { email: { a: 1 }, password: 12 } });
    expect(typed.body.result).toEqual({ email: ['Invalid value.'], password: ['Ensure this value has at least 6 characters (it has 2).'] });
    const spaced = await s.req('POST', '/api/accounts/user/carol/', { body: { api_key: 'has a space in the key' } });
    expect(spaced.body.result).toEqual({ api_key: ['Invalid value.'] });
    const taken = await s.req('POST', '/api/accounts/user/carol/', { body: { api_key: 'bob-api-key-0123456789' } });
    expect(taken.body.result).toEqual({ api_key: ['This API key is already in use.'] });
    const notObject = await s.req('POST', '/api/accounts/user/carol/', { body: 'x' });
    expect(notObject.status).toBe(400);
    expect(notObject.body.result).toEqual({ non_field_errors: ['Invalid data'] });
    expect(await row('carol')).toBeUndefined();

    const ok = await s.req('POST', '/api/accounts/user/carol.x@corp-1/', { body: { is_super_admin: 'true', api_access: 0 } });
    expect(ok.status).toBe(201);
    expect(ok.body.result).toMatchObject({ username: 'carol.x@corp-1', is_super_admin: true, api_access: false });
  });

  it('is for super admins, except reading and updating oneself', async () => {
    const bob = { key: 'bob-api-key-0123456789' };
    for (const [method, path] of [
      ['GET', '/api/accounts/user/'],
      ['GET', '/api/accounts/user/admin/'],
      ['POST', '/api/accounts/user/dave/'],
      ['PUT', '/api/accounts/user/admin/'],
      ['DELETE', '/api/accounts/user/admin/'],
      ['DELETE', '/api/accounts/user/bob/'],
      ['GET', '/api/accounts/user/nobody/'],
    ] as const) {
      const r = await s.req(method, path, { ...bob, body: method === 'GET' ? undefined : {} });
      expect([method, path, r.status, r.body]).toEqual([method, path, 403, { detail: 'Permission denied' }]);
    }
    // Self-service: email, password, api_key, current_dc.
    const upd = await s.req('PUT', '/api/accounts/user/bob/', { ...bob, body: { email: 'b@x.org', password: 'new-password' } });
    expect(upd.status).toBe(200);
    expect(upd.body.result.email).toBe('b@x.org');
    // Sending one's own flags back unchanged is fine; changing them is not.
    const same = await s.req('PUT', '/api/accounts/user/bob/', { ...bob, body: { is_super_admin: false, api_access: true, is_active: true } });
    expect(same.status).toBe(200);
    const escalate = await s.req('PUT', '/api/accounts/user/bob/', { ...bob, body: { is_super_admin: true } });
    expect(escalate.status).toBe(403);
    expect(escalate.body).toEqual({ detail: 'Permission denied' });
    expect((await row('bob'))!.is_super_admin).toBe(0);
    // The new password works for login.
    const login = await s.req('POST', '/api/accounts/login/', { key: null, body: { username: 'bob', password: 'new-password' } });
    expect(login.status).toBe(200);
  });

  it('updates users as super admin and changes the API key', async () => {
    const r = await s.req('PUT', '/api/accounts/user/bob/', { body: { api_key: 'bob-second-key-0123456789', is_active: 'false' } });
    expect(r.status).toBe(200);
    expect(r.body.result.is_active).toBe(false);
    expect((await s.req('GET', '/api/accounts/user/bob/', { key: 'bob-api-key-0123456789' })).body).toEqual({ detail: 'Invalid API key' });
    const inactive = await s.req('GET', '/api/accounts/user/bob/', { key: 'bob-second-key-0123456789' });
    expect(inactive.status).toBe(403);
    expect(inactive.body).toEqual({ detail: 'User inactive or deleted.' });
    expect((await s.req('PUT', '/api/accounts/user/bob/', { body: { is_active: true } })).status).toBe(200);
    expect((await s.req('GET', '/api/accounts/user/bob/', { key: 'bob-second-key-0123456789' })).status).toBe(200);
    // null clears a secret.
    expect((await s.req('PUT', '/api/accounts/user/bob/', { body: { api_key: null } })).status).toBe(200);
    expect((await row('bob'))!.api_key_hash).toBeNull();
    const log = await s.runtime.ctx.db.selectFrom('task_log').select('msg').where('object_name', '=', 'bob').where('msg', '=', 'Update user').execute();
    expect(log.length).toBeGreaterThanOrEqual(4);
    const missing = await s.req('PUT', '/api/accounts/user/nobody/', { body: {} });
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ detail: 'User not found' });
  });

  it('keeps _system out of reach', async () => {
    for (const method of ['GET', 'PUT', 'DELETE'] as const) {
      const r = await s.req(method, '/api/accounts/user/_system/', { body: method === 'GET' ? undefined : {} });
      expect([method, r.status, r.body]).toEqual([method, 404, { detail: 'User not found' }]);
    }
    const post = await s.req('POST', '/api/accounts/user/_system/', { body: {} });
    expect(post.status).toBe(400);
    expect(post.body.result).toEqual({ username: ['Invalid value.'] });
    const sys = await s.runtime.ctx.db.selectFrom('account').selectAll().where('id', '=', 7).executeTakeFirstOrThrow();
    expect([sys.username, sys.api_access, sys.is_active]).toEqual(['_system', 0, 1]);
  });

  it('refuses to lose the last super admin', async () => {
    // carol is a super admin without API access, so admin is the last usable one.
    for (const body of [{ is_super_admin: false }, { is_active: false }, { api_access: false }]) {
      const r = await s.req('PUT', '/api/accounts/user/admin/', { body });
      expect(r.status).toBe(417);
      expect(r.body).toEqual({ detail: 'Cannot remove the last super admin' });
    }
    const del = await s.req('DELETE', '/api/accounts/user/admin/');
    expect(del.status).toBe(417);
    expect(del.body).toEqual({ detail: 'Cannot remove the last super admin' });
    expect((await row('admin'))!.is_super_admin).toBe(1);

    // With a second usable super admin, admin can step down.
    expect((await s.req('POST', '/api/accounts/user/eve/', { body: { is_super_admin: true, api_key: 'eve-api-key-0123456789' } })).status).toBe(201);
    const down = await s.req('PUT', '/api/accounts/user/admin/', { body: { is_super_admin: false } });
    expect(down.status).toBe(200);
    expect(down.body.result.is_super_admin).toBe(false);
    expect((await s.req('GET', '/api/accounts/user/', {})).status).toBe(403);
    const back = await s.req('PUT', '/api/accounts/user/admin/', { key: 'eve-api-key-0123456789', body: { is_super_admin: true } });
    expect(back.status).toBe(200);
  });

  it('refuses to delete owners of VMs or DCs, and deletes others with their grants and tokens', async () => {
    const ctx = s.runtime.ctx;
    const frank = await s.req('POST', '/api/accounts/user/frank/', { body: { password: 'frank-password' } });
    expect(frank.status).toBe(201);
    const id = (await row('frank'))!.id;
    const node = await ctx.db.selectFrom('node').select('id').executeTakeFirstOrThrow();
    const now = new Date().toISOString();
    await ctx.db
      .insertInto('vm')
      .values({
        uuid: '11111111-2222-4333-8444-555555555555', hostname: 'frank-vm', alias: 'frank-vm', dc_id: 1, owner_id: id, node_id: node.id,
        brand: 'kvm', status: 1, status_change: null, qmp_socket: null, qga_socket: null, snapshot_limit_manual: null,
        snapshot_limit_auto: null, snapshot_size_limit: null, snapshot_size_percent_limit: null, created: now, changed: now,
      })
      .execute();
    const refused = await s.req('DELETE', '/api/accounts/user/frank/');
    expect(refused.status).toBe(417);
    expect(refused.body).toEqual({ detail: 'User owns VMs; delete them or change their owner first' });
    await ctx.db.deleteFrom('vm').where('hostname', '=', 'frank-vm').execute();

    expect((await s.req('POST', '/api/dc/frankdc/', { body: { owner: 'frank' } })).status).toBe(201);
    const dcOwner = await s.req('DELETE', '/api/accounts/user/frank/');
    expect(dcOwner.status).toBe(417);
    expect(dcOwner.body).toEqual({ detail: 'User owns datacenters; change their owner first' });
    expect((await s.req('PUT', '/api/dc/frankdc/', { body: { owner: 'admin' } })).status).toBe(200);

    expect((await s.req('POST', '/api/dc/main/admin/frank/')).status).toBe(201);
    expect((await s.req('POST', '/api/accounts/login/', { key: null, body: { username: 'frank', password: 'frank-password' } })).status).toBe(200);
    const del = await s.req('DELETE', '/api/accounts/user/frank/');
    expect(del.status).toBe(200);
    expect(del.body.status).toBe('SUCCESS');
    expect(del.body.result).toBeNull();
    expect(await row('frank')).toBeUndefined();
    expect(await ctx.db.selectFrom('dc_admin').selectAll().where('user_id', '=', id).execute()).toEqual([]);
    expect(await ctx.db.selectFrom('auth_token').selectAll().where('user_id', '=', id).execute()).toEqual([]);
    const log = await ctx.db.selectFrom('task_log').select(['msg', 'object_type']).where('object_name', '=', 'frank').where('msg', '=', 'Delete user').execute();
    expect(log).toEqual([{ msg: 'Delete user', object_type: 'user' }]);
    expect((await s.req('DELETE', '/api/accounts/user/frank/')).status).toBe(404);
  });
});
