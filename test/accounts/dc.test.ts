/**
 * DCs over real HTTP on both databases: CRUD, visibility of private DCs, the snapshot settings,
 * DC admin grants (which make a user Admin in that DC), and routing of `/api/dc/<dc>/…` views
 * beside the DC-prefixed mounting of DC-bound views.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';

const DC_KEYS = ['name', 'alias', 'access', 'owner'];
const SETTINGS = {
  VMS_VM_SNAPSHOT_ENABLED: true,
  VMS_VM_SNAPSHOT_DEFINE_LIMIT: null,
  VMS_VM_SNAPSHOT_LIMIT_AUTO: null,
  VMS_VM_SNAPSHOT_LIMIT_MANUAL: null,
  VMS_VM_SNAPSHOT_LIMIT_MANUAL_DEFAULT: null,
  VMS_VM_SNAPSHOT_SIZE_LIMIT: null,
  VMS_VM_SNAPSHOT_SIZE_LIMIT_DEFAULT: null,
  VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT: null,
  VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT_DEFAULT: null,
  VMS_VM_SNAPSHOT_DC_SIZE_LIMIT: null,
};
const USER_KEY = 'user-api-key-0123456789';
const asUser = { key: USER_KEY };

forEachDb('accounts: datacenters', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind);
    expect((await s.req('POST', '/api/accounts/user/user1/', { body: { api_key: USER_KEY } })).status).toBe(201);
  });
  afterAll(() => s.cleanup());

  it('shows main and creates private and public DCs', async () => {
    const main = await s.req('GET', '/api/dc/main/');
    expect(main.status).toBe(200);
    expect(Object.keys(main.body.result)).toEqual(DC_KEYS);
    expect(main.body.result).toEqual({ name: 'main', alias: 'Main', access: 1, owner: 'admin' });

    const priv = await s.req('POST', '/api/dc/lab/', { body: { alias: 'Lab' } });
    expect(priv.status).toBe(201);
    expect(priv.body.status).toBe('SUCCESS');
    expect(priv.body.result).toEqual({ name: 'lab', alias: 'Lab', access: 3, owner: 'admin' });
    const pub = await s.req('POST', '/api/dc/pub/', { body: { access: '1', owner: 'user1' } });
    expect(pub.body.result).toEqual({ name: 'pub', alias: 'pub', access: 1, owner: 'user1' });

    expect((await s.req('GET', '/api/dc/')).body.result).toEqual(['lab', 'main', 'pub']);
    const full = await s.req('GET', '/api/dc/', { query: { full: '1' } });
    expect(full.body.result.map((d: { name: string }) => d.name)).toEqual(['lab', 'main', 'pub']);
    expect(Object.keys(full.body.result[0])).toEqual(DC_KEYS);

    const log = await s.runtime.ctx.db.selectFrom('task_log').select(['msg', 'object_type', 'object_name']).where('object_type', '=', 'dc').execute();
    expect(log).toEqual([
      { msg: 'Create datacenter', object_type: 'dc', object_name: 'lab' },
      { msg: 'Create datacenter', object_type: 'dc', object_name: 'pub' },
    ]);
  });

  it('validates DC input', async () => {
    const exists = await s.req('POST', '/api/dc/lab/', { body: {} });
    expect(exists.status).toBe(406);
    expect(exists.body).toEqual({ detail: 'Datacenter already exists' });
    const bad = await s.req('POST', '/api/dc/a;b/', { body: { access: 2, owner: 'ghost', alias: 'x'.repeat(33) } });
    expect(bad.status).toBe(400);
    expect(bad.body.result).toEqual({
      name: ['Invalid value.'],
      alias: ['Ensure this value has at most 32 characters (it has 33).'],
      access: ['Select a valid choice. 2 is not one of the available choices.'],
      owner: ['Object with username=ghost does not exist.'],
    });
    const long = await s.req('POST', `/api/dc/${'d'.repeat(17)}/`, { body: { access: 'x' } });
    expect(long.body.result).toEqual({ name: ['Ensure this value has at most 16 characters (it has 17).'], access: ['Enter a whole number.'] });
    expect((await s.req('POST', '/api/dc/sysdc/', { body: { owner: '_system' } })).body.result).toEqual({
      owner: ['Object with username=_system does not exist.'],
    });
    expect((await s.req('GET', '/api/dc/')).body.result).toEqual(['lab', 'main', 'pub']);
  });

  it('hides private DCs from users without access; writes need super admin', async () => {
    expect((await s.req('GET', '/api/dc/', asUser)).body.result).toEqual(['main', 'pub']);
    const lab = await s.req('GET', '/api/dc/lab/', asUser);
    expect(lab.status).toBe(404);
    expect(lab.body).toEqual({ detail: 'Datacenter not found' });
    expect((await s.req('GET', '/api/dc/nowhere/')).status).toBe(404);
    for (const [method, path] of [
      ['POST', '/api/dc/new/'],
      ['PUT', '/api/dc/main/'],
      ['DELETE', '/api/dc/pub/'],
      ['PUT', '/api/dc/main/settings/'],
      ['GET', '/api/dc/main/admin/'],
      ['GET', '/api/dc/main/admin/user1/'],
      ['POST', '/api/dc/main/admin/user1/'],
      ['DELETE', '/api/dc/main/admin/user1/'],
    ] as const) {
      const r = await s.req(method, path, { ...asUser, body: method === 'GET' ? undefined : {} });
      expect([method, path, r.status, r.body]).toEqual([method, path, 403, { detail: 'Permission denied' }]);
    }
    // Settings are for the DC's admins: user1 owns `pub`, which makes them Admin there.
    const mainSettings = await s.req('GET', '/api/dc/main/settings/', asUser);
    expect(mainSettings.status).toBe(403);
    expect(mainSettings.body).toEqual({ detail: 'Permission denied' });
    expect((await s.req('GET', '/api/dc/pub/settings/', asUser)).status).toBe(200);
    // A user cannot move into a private DC by choosing it as current DC.
    const sneak = await s.req('PUT', '/api/accounts/user/user1/', { ...asUser, body: { current_dc: 'lab' } });
    expect(sneak.status).toBe(400);
    expect(sneak.body.result).toEqual({ current_dc: ['Object with name=lab does not exist.'] });
    expect((await s.req('PUT', '/api/accounts/user/user1/', { ...asUser, body: { current_dc: 'pub' } })).body.result.current_dc).toBe('pub');
  });

  it('updates a DC', async () => {
    const r = await s.req('PUT', '/api/dc/lab/', { body: { alias: 'Laboratory', access: 1, name: 'ignored' } });
    expect(r.status).toBe(200);
    expect(r.body.result).toEqual({ name: 'lab', alias: 'Laboratory', access: 1, owner: 'admin' });
    expect((await s.req('GET', '/api/dc/lab/', asUser)).status).toBe(200);
    expect((await s.req('PUT', '/api/dc/lab/', { body: { access: 3 } })).body.result.access).toBe(3);
    expect((await s.req('GET', '/api/dc/lab/', asUser)).status).toBe(404);
    expect((await s.req('PUT', '/api/dc/nowhere/', { body: {} })).status).toBe(404);
  });

  it('reads and validates the snapshot settings', async () => {
    const r = await s.req('GET', '/api/dc/main/settings/');
    expect(r.status).toBe(200);
    expect(r.body.result).toEqual(SETTINGS);
    expect(Object.keys(r.body.result)).toEqual(Object.keys(SETTINGS));

    const bad = await s.req('PUT', '/api/dc/main/settings/', {
      body: { VMS_VM_SNAPSHOT_LIMIT_AUTO: 0, VMS_VM_SNAPSHOT_SIZE_LIMIT: 'big', VMS_VM_SNAPSHOT_DEFINE_LIMIT: 2 },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.result).toEqual({
      VMS_VM_SNAPSHOT_LIMIT_AUTO: ['Ensure this value is greater than or equal to 1.'],
      VMS_VM_SNAPSHOT_SIZE_LIMIT: ['Enter a whole number.'],
    });
    expect((await s.req('GET', '/api/dc/main/settings/')).body.result).toEqual(SETTINGS);

    const ok = await s.req('PUT', '/api/dc/main/settings/', {
      body: { VMS_VM_SNAPSHOT_ENABLED: 'false', VMS_VM_SNAPSHOT_LIMIT_MANUAL: '5', VMS_VM_SNAPSHOT_DC_SIZE_LIMIT: 1024, OTHER: 1 },
    });
    expect(ok.status).toBe(200);
    const expected = { ...SETTINGS, VMS_VM_SNAPSHOT_ENABLED: false, VMS_VM_SNAPSHOT_LIMIT_MANUAL: 5, VMS_VM_SNAPSHOT_DC_SIZE_LIMIT: 1024 };
    expect(ok.body.result).toEqual(expected);
    expect((await s.req('GET', '/api/dc/main/settings')).body.result).toEqual(expected);
    const stored = await s.runtime.ctx.db.selectFrom('dc').select('settings').where('name', '=', 'main').executeTakeFirstOrThrow();
    expect(JSON.parse(stored.settings)).toEqual(expected);

    const back = await s.req('PUT', '/api/dc/main/settings/', { body: { VMS_VM_SNAPSHOT_ENABLED: true, VMS_VM_SNAPSHOT_LIMIT_MANUAL: null } });
    expect(back.body.result).toEqual({ ...expected, VMS_VM_SNAPSHOT_ENABLED: true, VMS_VM_SNAPSHOT_LIMIT_MANUAL: null });
    const log = await s.runtime.ctx.db.selectFrom('task_log').select('detail').where('msg', '=', 'Update datacenter settings').execute();
    expect(log.map((l) => l.detail)).toEqual([
      'VMS_VM_SNAPSHOT_ENABLED=false, VMS_VM_SNAPSHOT_LIMIT_MANUAL=5, VMS_VM_SNAPSHOT_DC_SIZE_LIMIT=1024',
      'VMS_VM_SNAPSHOT_ENABLED=true, VMS_VM_SNAPSHOT_LIMIT_MANUAL=None',
    ]);
  });

  it('a DC admin grant makes a user Admin in that DC and gives access to it', async () => {
    expect((await s.req('GET', '/api/dc/lab/settings/', asUser)).status).toBe(404);
    const grant = await s.req('POST', '/api/dc/lab/admin/user1/');
    expect(grant.status).toBe(201);
    expect(grant.body.result).toEqual({ username: 'user1', dc: 'lab' });
    const again = await s.req('POST', '/api/dc/lab/admin/user1/');
    expect(again.status).toBe(406);
    expect(again.body).toEqual({ detail: 'User is already a datacenter admin' });
    expect((await s.req('GET', '/api/dc/lab/admin/')).body.result).toEqual(['user1']);
    expect((await s.req('GET', '/api/dc/lab/admin/user1/')).body.result).toEqual({ username: 'user1', dc: 'lab' });

    const settings = await s.req('GET', '/api/dc/lab/settings/', asUser);
    expect(settings.status).toBe(200);
    expect(settings.body.result).toEqual(SETTINGS);
    expect((await s.req('GET', '/api/dc/', asUser)).body.result).toEqual(['lab', 'main', 'pub']);
    // Admin of lab, not super admin: lab's settings stay read-only.
    expect((await s.req('PUT', '/api/dc/lab/settings/', { ...asUser, body: {} })).status).toBe(403);

    const revoke = await s.req('DELETE', '/api/dc/lab/admin/user1/');
    expect(revoke.status).toBe(200);
    expect(revoke.body.result).toBeNull();
    expect((await s.req('GET', '/api/dc/lab/settings/', asUser)).status).toBe(404);
    const gone = await s.req('DELETE', '/api/dc/lab/admin/user1/');
    expect(gone.status).toBe(404);
    expect(gone.body).toEqual({ detail: 'User is not a datacenter admin' });
    expect((await s.req('GET', '/api/dc/lab/admin/user1/')).status).toBe(404);
    expect((await s.req('POST', '/api/dc/lab/admin/ghost/')).body).toEqual({ detail: 'User not found' });
    expect((await s.req('POST', '/api/dc/lab/admin/_system/')).body).toEqual({ detail: 'User not found' });
    expect((await s.req('POST', '/api/dc/nowhere/admin/user1/')).body).toEqual({ detail: 'Datacenter not found' });
    const log = await s.runtime.ctx.db.selectFrom('task_log').select('msg').where('object_name', '=', 'lab').execute();
    expect(log.map((l) => l.msg)).toContain('Add datacenter admin');
    expect(log.map((l) => l.msg)).toContain('Remove datacenter admin');
  });

  it('routes /api/dc/<dc>/ views and answers OPTIONS and 405', async () => {
    const opt = await s.req('OPTIONS', '/api/dc/main/settings/');
    expect(opt.status).toBe(200);
    expect(opt.body.name).toBe('Datacenter settings');
    const post = await s.req('POST', '/api/dc/main/settings/', { body: {} });
    expect(post.status).toBe(405);
    expect(post.body).toEqual({ detail: 'Method "POST" not allowed.' });
    expect((await s.req('GET', '/api/dc/main')).body.result.name).toBe('main');
    expect((await s.req('GET', '/api/dc')).body.result).toEqual(['lab', 'main', 'pub']);
  });

  it('deletes DCs, never main or one with VMs', async () => {
    const main = await s.req('DELETE', '/api/dc/main/');
    expect(main.status).toBe(417);
    expect(main.body).toEqual({ detail: 'The default datacenter cannot be deleted' });

    const ctx = s.runtime.ctx;
    const pub = await ctx.db.selectFrom('dc').select('id').where('name', '=', 'pub').executeTakeFirstOrThrow();
    const node = await ctx.db.selectFrom('node').select('id').executeTakeFirstOrThrow();
    const now = new Date().toISOString();
    await ctx.db
      .insertInto('vm')
      .values({
        uuid: '21111111-2222-4333-8444-555555555555', hostname: 'pub-vm', alias: 'pub-vm', dc_id: pub.id, owner_id: 1, node_id: node.id,
        brand: 'kvm', status: 1, status_change: null, qmp_socket: null, qga_socket: null, snapshot_limit_manual: null,
        snapshot_limit_auto: null, snapshot_size_limit: null, snapshot_size_percent_limit: null, created: now, changed: now,
      })
      .execute();
    const withVm = await s.req('DELETE', '/api/dc/pub/');
    expect(withVm.status).toBe(417);
    expect(withVm.body).toEqual({ detail: 'Datacenter has VMs; delete or move them first' });
    await ctx.db.deleteFrom('vm').where('hostname', '=', 'pub-vm').execute();

    // user1's current DC is pub: it falls back to main.
    const del = await s.req('DELETE', '/api/dc/pub/');
    expect(del.status).toBe(200);
    expect(del.body.result).toBeNull();
    expect((await s.req('GET', '/api/dc/pub/')).status).toBe(404);
    expect((await s.req('GET', '/api/accounts/user/user1/')).body.result.current_dc).toBe('main');
    expect((await s.req('GET', '/api/dc/')).body.result).toEqual(['lab', 'main']);
    const log = await ctx.db.selectFrom('task_log').select('msg').where('object_name', '=', 'pub').where('msg', '=', 'Delete datacenter').execute();
    expect(log).toHaveLength(1);
  });
});
