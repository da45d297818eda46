/**
 * The snapshot list's one-statement path (`fastGet` of vm_snapshot_list: the API key's user, the
 * DC, the VM and the list in one statement on PostgreSQL, two on SQLite) answers every case as the
 * general path (authenticate, resolveDc, findVm, then the list) does: each request is sent with
 * the user's API key (the fast path) and with a token of the same user (the general path), and
 * status, body and the es_username/es_dc headers must agree; the expected errors are spelled out
 * too. A spy on the executor checks that the API-key requests took the fast path.
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { forEachDb, withServer, type Reply, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';

const CAROL_KEY = 'carol-api-key-0123456789';

forEachDb('snapshot list: the one-statement path answers as the general path', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let token = '';
  let own: VmFixture;
  let other: VmFixture;
  const sqls: string[] = [];

  beforeAll(async () => {
    s = await withServer(kind);
    const mk = async (name: string, body: Record<string, unknown>) =>
      expect((await s.req('POST', `/api/accounts/user/${name}/`, { body })).status).toBe(201);
    await mk('carol', { api_key: CAROL_KEY, password: 'carol-secret-pw' });
    await mk('dave', { api_key: 'dave-api-key-0123456789', is_active: false });
    await mk('erin', { api_key: 'erin-api-key-0123456789', api_access: false });
    expect((await s.req('POST', '/api/dc/lab/', { body: { alias: 'Lab' } })).status).toBe(201);
    expect((await s.req('POST', '/api/dc/pub/', { body: { access: '1' } })).status).toBe(201);
    expect((await s.req('POST', '/api/dc/off/', { body: { access: '1' } })).status).toBe(201);
    expect((await s.req('PUT', '/api/dc/off/settings/', { body: { VMS_VM_SNAPSHOT_ENABLED: false } })).status).toBe(200);
    const db = s.runtime.ctx.db;
    const carol = await db.selectFrom('account').select('id').where('username', '=', 'carol').executeTakeFirstOrThrow();
    const dcId = async (name: string) => (await db.selectFrom('dc').select('id').where('name', '=', name).executeTakeFirstOrThrow()).id;
    own = await makeVm(s, 'own01', { ownerId: carol.id, disks: [1, 1] });
    other = await makeVm(s, 'adm01');
    const inLab = await makeVm(s, 'lab01', { ownerId: carol.id });
    const inPub = await makeVm(s, 'pub01', { ownerId: carol.id });
    const inOff = await makeVm(s, 'off01', { ownerId: carol.id });
    // A VM whose hostname is another VM's uuid: the hostname wins (findVm).
    await makeVm(s, other.uuid, { ownerId: carol.id });
    await db.updateTable('vm').set({ dc_id: await dcId('lab') }).where('uuid', '=', inLab.uuid).execute();
    await db.updateTable('vm').set({ dc_id: await dcId('pub') }).where('uuid', '=', inPub.uuid).execute();
    await db.updateTable('vm').set({ dc_id: await dcId('off') }).where('uuid', '=', inOff.uuid).execute();
    const storage = await db.selectFrom('node_storage').select('id').executeTakeFirstOrThrow();
    for (const [vm, name, disk] of [[own, 'a', 0], [own, 'b', 1], [other, 'c', 0], [inPub, 'd', 0]] as const) {
      await db
        .insertInto('snapshot')
        .values({
          vm_uuid: vm.uuid, define_id: null, name, type: 2, status: 1, storage_id: storage.id, size: 1, note: `n-${name}`, fsfreeze: 0, pinned: 0,
          disk_real_id: disk, status_change: null, created: '2026-03-04T05:06:07.123Z', changed: '2026-03-04T05:06:07.123Z',
        })
        .execute();
    }
    const login = await s.req('POST', '/api/accounts/login/', { key: null, body: { username: 'carol', password: 'carol-secret-pw' } });
    expect(login.status).toBe(200);
    token = login.body.token as string;
    const executor = s.runtime.ctx.db.getExecutor();
    const run = executor.executeQuery.bind(executor);
    vi.spyOn(executor, 'executeQuery').mockImplementation((q) => {
      sqls.push(q.sql);
      return run(q);
    });
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await s.cleanup();
  });

  /** The answer as compared: the dummy task id's random part left out. */
  const shape = (r: Reply) => ({
    status: r.status,
    body: r.body?.task_id ? { ...r.body, task_id: String(r.body.task_id).split('-').slice(0, 2).join('-') } : r.body,
    es_username: r.headers['es_username'],
    es_dc: r.headers['es_dc'],
    es_task_id: r.headers['es_task_id']?.split('-').slice(0, 2).join('-'),
  });

  /** The same GET by API key (fast path, checked) and by token (general path); both answers. */
  async function both(path: string, query: Record<string, string> = {}, key = CAROL_KEY): Promise<ReturnType<typeof shape>> {
    sqls.length = 0;
    const fast = await s.req('GET', path, { key, query });
    const ran = [...sqls];
    // The fast path ran: its statement, and none of the general path's lookups (Kysely-built).
    expect(ran.filter((q) => q.includes('cu AS (SELECT'))).toHaveLength(1);
    expect(ran.filter((q) => /from "(account|dc|vm|dc_admin)"/.test(q))).toEqual([]);
    const general = await s.req('GET', path, { key: null, query, headers: { Authorization: `Token ${token}` } });
    expect(shape(fast)).toEqual(shape(general));
    return shape(fast);
  }

  it('lists an own VM by hostname and by uuid, with the filters, in one statement on PostgreSQL', async () => {
    const r = await both('/api/vm/own01/snapshot/', { full: 'true' });
    expect(r).toMatchObject({ status: 200, es_username: 'carol', es_dc: 'main' });
    expect(r.body.result.map((x: { name: string; disk_id: number }) => [x.name, x.disk_id])).toEqual([['b', 2], ['a', 1]]);
    expect(r.body.task_id).toMatch(/^\d+d\d+d\d+-/);
    if (kind === 'postgres') expect(sqls.filter((q) => q.includes('cu AS (SELECT'))[0]).toContain('string_agg');
    expect((await both(`/api/vm/${own.uuid}/snapshot/`)).body.result).toEqual(['b', 'a']);
    expect((await both('/api/vm/own01/snapshot/', { order_by: 'name', type: '2' })).body.result).toEqual(['a', 'b']);
    expect((await both('/api/vm/own01/snapshot/', { define: 'nothing' })).body.result).toEqual([]);
    expect((await both('/api/dc/main/vm/own01/snapshot/')).status).toBe(200);
  });

  it('prefers the hostname over another VM uuid, as findVm does', async () => {
    const r = await both(`/api/vm/${other.uuid}/snapshot/`);
    expect(r.status).toBe(200);
    expect(r.body.result).toEqual([]);
  });

  it('refuses a wrong key, an inactive user and a user without API access', async () => {
    for (const [key, detail] of [
      ['wrong-api-key-0123456789', 'Invalid API key'],
      ['dave-api-key-0123456789', 'User inactive or deleted.'],
      ['erin-api-key-0123456789', 'User account is not allowed to access API'],
    ] as const) {
      sqls.length = 0;
      const r = await s.req('GET', '/api/vm/own01/snapshot/', { key });
      expect(r.status).toBe(403);
      expect(r.body).toEqual({ detail });
      expect(r.headers['es_username']).toBeUndefined();
      expect(sqls.filter((q) => q.includes('cu AS (SELECT'))).toHaveLength(1);
    }
  });

  it('answers 404 for a DC the user may not enter or that does not exist, by prefix and by parameter', async () => {
    for (const [path, query] of [
      ['/api/dc/lab/vm/lab01/snapshot/', {}],
      ['/api/vm/lab01/snapshot/', { dc: 'lab' }],
      ['/api/dc/nowhere/vm/own01/snapshot/', {}],
      ['/api/dc/main/vm/own01/snapshot/', { dc: 'nowhere' }],
    ] as [string, Record<string, string>][]) {
      const r = await both(path, query);
      expect(r).toEqual({ status: 404, body: { detail: 'Datacenter not found' }, es_username: undefined, es_dc: undefined, es_task_id: '' });
    }
    // A public DC is open; its VMs are listed there, and those of main are not found there.
    expect((await both('/api/dc/pub/vm/pub01/snapshot/')).body.result).toEqual(['d']);
    const elsewhere = await both('/api/vm/own01/snapshot/', { dc: 'pub' });
    expect(elsewhere).toMatchObject({ status: 404, body: { detail: 'VM not found' }, es_username: 'carol', es_dc: 'pub' });
  });

  it('answers 404 for a missing VM, a VM of another user and a VM in another DC; a DC admin sees them', async () => {
    for (const path of ['/api/vm/nothere/snapshot/', '/api/vm/adm01/snapshot/', '/api/vm/lab01/snapshot/', '/api/vm/pub01/snapshot/']) {
      const r = await both(path, { full: '1' });
      expect(r).toMatchObject({ status: 404, body: { detail: 'VM not found' }, es_username: 'carol', es_dc: 'main' });
    }
    expect((await s.req('POST', '/api/dc/main/admin/carol/')).status).toBe(201);
    const r = await both('/api/vm/adm01/snapshot/');
    expect(r).toMatchObject({ status: 200, body: { result: ['c'] } });
    // The dummy task id names the VM's owner (the admin), not the caller.
    expect(r.body.task_id).toMatch(/^\d+d1d\d+-/);
    expect((await s.req('DELETE', '/api/dc/main/admin/carol/')).status).toBe(200);
    expect((await both('/api/vm/adm01/snapshot/')).status).toBe(404);
  });

  it('answers 404 Not found where the DC has snapshots switched off, before looking at the VM', async () => {
    for (const path of ['/api/dc/off/vm/off01/snapshot/', '/api/dc/off/vm/nothere/snapshot/']) {
      expect(await both(path)).toEqual({ status: 404, body: { detail: 'Not found' }, es_username: 'carol', es_dc: 'off', es_task_id: '' });
    }
  });

  it('runs in the current DC of the user when none is named', async () => {
    expect((await s.req('PUT', '/api/accounts/user/carol/', { body: { current_dc: 'pub' } })).status).toBe(200);
    try {
      expect(await both('/api/vm/pub01/snapshot/')).toMatchObject({ status: 200, body: { result: ['d'] }, es_dc: 'pub' });
      expect((await both('/api/vm/own01/snapshot/')).status).toBe(404);
    } finally {
      expect((await s.req('PUT', '/api/accounts/user/carol/', { body: { current_dc: 'main' } })).status).toBe(200);
    }
  });

  it('leaves a disk_id filter and refused parameters to the general path (same answers)', async () => {
    for (const query of [{ disk_id: '2' }, { disk_id: '9' }, { type: '5' }, { order_by: 'x' }] as Record<string, string>[]) {
      sqls.length = 0;
      const fast = await s.req('GET', '/api/vm/own01/snapshot/', { key: CAROL_KEY, query });
      expect(sqls.filter((q) => q.includes('cu AS (SELECT'))).toEqual([]);
      const general = await s.req('GET', '/api/vm/own01/snapshot/', { key: null, query, headers: { Authorization: `Token ${token}` } });
      expect(shape(fast)).toEqual(shape(general));
    }
    // A refused parameter on a missing VM: the VM's 404 first, as before.
    expect((await s.req('GET', '/api/vm/nothere/snapshot/', { key: CAROL_KEY, query: { type: '5' } })).body).toEqual({ detail: 'VM not found' });
  });
});
