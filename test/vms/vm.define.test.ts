import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser } from '../helpers/fixtures.js';

const VM_KEYS = [
  'hostname',
  'uuid',
  'alias',
  'node',
  'owner',
  'status',
  'brand',
  'qmp_socket',
  'qga_socket',
  'snapshot_limit_manual',
  'snapshot_limit_auto',
  'snapshot_size_limit',
  'snapshot_size_percent_limit',
  'disks',
];
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function setDcSettings(s: TestServer, settings: Record<string, unknown>): Promise<void> {
  await s.runtime.ctx.db.updateTable('dc').set({ settings: JSON.stringify(settings) }).where('name', '=', 'main').execute();
}

async function vmCount(s: TestServer): Promise<number> {
  const rows = await s.runtime.ctx.db.selectFrom('vm').select('uuid').execute();
  return rows.length;
}

forEachDb('VM define', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let alice: { id: number; key: string };
  let bob: { id: number; key: string };
  beforeAll(async () => {
    s = await withServer(kind);
    alice = await makeUser(s, 'alice');
    bob = await makeUser(s, 'bob');
  });
  afterAll(() => s.cleanup());

  describe('create', () => {
    it('creates a VM with defaults: 201 SUCCESS, the object in its key order', async () => {
      const r = await s.req('POST', '/api/vm/web01.example.com/define/', { body: {} });
      expect(r.status).toBe(201);
      expect(r.body.status).toBe('SUCCESS');
      expect(r.body.task_id).toMatch(/^1d1d1-/);
      const vm = r.body.result;
      expect(Object.keys(vm)).toEqual(VM_KEYS);
      expect(vm.uuid).toMatch(UUID_RE);
      expect(vm).toEqual({
        hostname: 'web01.example.com',
        uuid: vm.uuid,
        alias: 'web01.example.com',
        node: s.node,
        owner: 'admin',
        status: 'stopped',
        brand: 'kvm',
        qmp_socket: null,
        qga_socket: null,
        snapshot_limit_manual: null,
        snapshot_limit_auto: null,
        snapshot_size_limit: null,
        snapshot_size_percent_limit: null,
        disks: 0,
      });
      const g = await s.req('GET', '/api/vm/web01.example.com/define/');
      expect(g.status).toBe(200);
      expect(g.body.result).toEqual(vm);
      const byUuid = await s.req('GET', `/api/vm/${vm.uuid}/define`);
      expect(byUuid.body.result.hostname).toBe('web01.example.com');
      const log = await s.runtime.ctx.db
        .selectFrom('task_log')
        .selectAll()
        .where('object_name', '=', 'web01.example.com')
        .where('msg', '=', 'Create server definition')
        .execute();
      expect(log).toHaveLength(1);
      expect(log[0]!.status).toBe('SUCCESS');
      expect(log[0]!.flag).toBe(1);
      expect(log[0]!.object_pk).toBe(vm.uuid);
    });

    it('takes every field, lower-casing the uuid', async () => {
      const uuid = 'A1B2C3D4-0000-4000-8000-00000000000A';
      const r = await s.req('POST', '/api/vm/full01/define', {
        body: {
          uuid,
          alias: 'full',
          node: s.node,
          owner: 'alice',
          status: 'running',
          brand: 'bhyve',
          qmp_socket: '/run/qemu/full01.qmp',
          qga_socket: '/run/qemu/full01.qga',
          snapshot_limit_manual: '3',
          snapshot_limit_auto: 4,
          snapshot_size_limit: 1024,
          snapshot_size_percent_limit: 50,
          unknown_key: 'ignored',
        },
      });
      expect(r.status).toBe(201);
      expect(r.body.result).toEqual({
        hostname: 'full01',
        uuid: uuid.toLowerCase(),
        alias: 'full',
        node: s.node,
        owner: 'alice',
        status: 'running',
        brand: 'bhyve',
        qmp_socket: '/run/qemu/full01.qmp',
        qga_socket: '/run/qemu/full01.qga',
        snapshot_limit_manual: 3,
        snapshot_limit_auto: 4,
        snapshot_size_limit: 1024,
        snapshot_size_percent_limit: 50,
        disks: 0,
      });
    });

    it('answers 406 for a taken hostname or uuid and writes nothing', async () => {
      const first = await s.req('POST', '/api/vm/dup01/define', { body: {} });
      const before = await vmCount(s);
      const again = await s.req('POST', '/api/vm/dup01/define', { body: {} });
      expect(again.status).toBe(406);
      expect(again.body).toEqual({ detail: 'VM already exists' });
      const sameUuid = await s.req('POST', '/api/vm/dup02/define', { body: { uuid: first.body.result.uuid } });
      expect(sameUuid.status).toBe(406);
      expect(sameUuid.body).toEqual({ detail: 'VM already exists' });
      expect(await vmCount(s)).toBe(before);
    });

    it('validates every field, errors in field order, and writes nothing', async () => {
      const before = await vmCount(s);
      const r = await s.req('POST', '/api/vm/-bad/define', {
        body: {
          alias: 'has space',
          uuid: 'not-a-uuid',
          node: 'nowhere',
          owner: 'nobody',
          status: 'paused',
          brand: 'xen',
          qmp_socket: 'relative.sock',
          qga_socket: `/${'a'.repeat(107)}`,
          snapshot_limit_manual: 'abc',
          snapshot_limit_auto: -1,
          snapshot_size_limit: 2147483648,
          snapshot_size_percent_limit: 10001,
        },
      });
      expect(r.status).toBe(400);
      expect(r.body.status).toBe('FAILURE');
      expect(Object.keys(r.body.result)).toEqual(VM_KEYS.slice(0, -1));
      expect(r.body.result).toEqual({
        hostname: ['Invalid value.'],
        uuid: ['Invalid value.'],
        alias: ['Invalid value.'],
        node: ['Object with hostname=nowhere does not exist.'],
        owner: ['Object with username=nobody does not exist.'],
        status: ['Select a valid choice. paused is not one of the available choices.'],
        brand: ['Select a valid choice. xen is not one of the available choices.'],
        qmp_socket: ['Invalid value.'],
        qga_socket: ['Ensure this value has at most 107 characters (it has 108).'],
        snapshot_limit_manual: ['Enter a whole number.'],
        snapshot_limit_auto: ['Ensure this value is greater than or equal to 0.'],
        snapshot_size_limit: ['Ensure this value is less than or equal to 2147483647.'],
        snapshot_size_percent_limit: ['Ensure this value is less than or equal to 10000.'],
      });
      expect(await vmCount(s)).toBe(before);
    });

    it('refuses wrong value types and hostnames over 253 characters', async () => {
      const r = await s.req('POST', `/api/vm/bad%20name/define`, { body: { alias: true, status: 1 } });
      expect(r.status).toBe(400);
      expect(r.body.result).toEqual({
        hostname: ['Invalid value.'],
        alias: ['Invalid value.'],
        status: ['Select a valid choice. 1 is not one of the available choices.'],
      });
      const long = await s.req('POST', `/api/vm/${'h'.repeat(254)}/define`, { body: {} });
      expect(long.status).toBe(400);
      expect(long.body.result).toEqual({ hostname: ['Ensure this value has at most 253 characters (it has 254).'] });
      const longest = await s.req('POST', `/api/vm/${'h'.repeat(253)}/define`, { body: {} });
      expect(longest.status).toBe(201);
      expect(longest.body.result.hostname).toHaveLength(253);
    });

    it('validates socket paths: absolute, no NUL or newline, at most 107 bytes', async () => {
      for (const bad of ['/run/a\nb', 'run/a', 5, `/${'é'.repeat(54)}`]) {
        const r = await s.req('POST', '/api/vm/sock01/define', { body: { qmp_socket: bad } });
        expect(r.status, JSON.stringify(bad)).toBe(400);
        expect(Object.keys(r.body.result)).toEqual(['qmp_socket']);
      }
      const ok = `/${'s'.repeat(106)}`;
      const r = await s.req('POST', '/api/vm/sock01/define', { body: { qmp_socket: ok, qga_socket: null } });
      expect(r.status).toBe(201);
      expect(r.body.result.qmp_socket).toBe(ok);
      expect(r.body.result.qga_socket).toBeNull();
    });

    it('answers 400 non_field_errors for a body that is not an object', async () => {
      const r = await s.req('POST', '/api/vm/arr01/define', { body: [1, 2] });
      expect(r.status).toBe(400);
      expect(r.body.result).toEqual({ non_field_errors: ['Invalid data'] });
    });

    it('applies the DC bounds and defaults of spec 9', async () => {
      await setDcSettings(s, { VMS_VM_SNAPSHOT_LIMIT_MANUAL: 10, VMS_VM_SNAPSHOT_SIZE_LIMIT: 500, VMS_VM_SNAPSHOT_LIMIT_AUTO: 20 });
      try {
        const missing = await s.req('POST', '/api/vm/lim01/define', { body: { snapshot_limit_auto: 21 } });
        expect(missing.status).toBe(400);
        expect(missing.body.result).toEqual({
          snapshot_limit_manual: ['This field is required.'],
          snapshot_limit_auto: ['Ensure this value is less than or equal to 20.'],
          snapshot_size_limit: ['This field is required.'],
        });
        const bounds = await s.req('POST', '/api/vm/lim01/define', {
          body: { snapshot_limit_manual: 0, snapshot_size_limit: 501, snapshot_limit_auto: null },
        });
        expect(bounds.body.result).toEqual({
          snapshot_limit_manual: ['Ensure this value is greater than or equal to 1.'],
          snapshot_size_limit: ['Ensure this value is less than or equal to 500.'],
        });
        const nulls = await s.req('POST', '/api/vm/lim01/define', { body: { snapshot_limit_manual: null, snapshot_size_limit: '' } });
        expect(nulls.body.result).toEqual({
          snapshot_limit_manual: ['This field is required.'],
          snapshot_size_limit: ['This field is required.'],
        });
        await setDcSettings(s, {
          VMS_VM_SNAPSHOT_LIMIT_MANUAL: 10,
          VMS_VM_SNAPSHOT_LIMIT_MANUAL_DEFAULT: 5,
          VMS_VM_SNAPSHOT_SIZE_LIMIT_DEFAULT: 300,
          VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT_DEFAULT: 70,
        });
        const dflt = await s.req('POST', '/api/vm/lim01/define', { body: {} });
        expect(dflt.status).toBe(201);
        expect(dflt.body.result.snapshot_limit_manual).toBe(5);
        expect(dflt.body.result.snapshot_size_limit).toBe(300);
        expect(dflt.body.result.snapshot_size_percent_limit).toBe(70);
        expect(dflt.body.result.snapshot_limit_auto).toBeNull();
        // A partial update does not demand the required field, but may not clear it.
        const put = await s.req('PUT', '/api/vm/lim01/define', { body: { alias: 'lim' } });
        expect(put.status).toBe(200);
        const clear = await s.req('PUT', '/api/vm/lim01/define', { body: { snapshot_limit_manual: null, snapshot_size_limit: null } });
        expect(clear.status).toBe(400);
        expect(clear.body.result).toEqual({ snapshot_limit_manual: ['This field is required.'] });
      } finally {
        await setDcSettings(s, {});
      }
      // Unbounded again: null clears the limits.
      const cleared = await s.req('PUT', '/api/vm/lim01/define', { body: { snapshot_limit_manual: null, snapshot_size_limit: null } });
      expect(cleared.status).toBe(200);
      expect(cleared.body.result.snapshot_limit_manual).toBeNull();
      expect(cleared.body.result.snapshot_size_limit).toBeNull();
    });
  });

  describe('update and delete', () => {
    it('updates only what is given; uuid is read-only; null clears a socket', async () => {
      const c = await s.req('POST', '/api/vm/upd01/define', { body: { qmp_socket: '/run/upd01.qmp', alias: 'upd' } });
      const uuid = c.body.result.uuid;
      const r = await s.req('PUT', '/api/vm/upd01/define/', {
        body: { owner: 'bob', uuid: '00000000-0000-4000-8000-000000000000', qmp_socket: null, brand: 'hvm', snapshot_limit_manual: 7 },
      });
      expect(r.status).toBe(200);
      expect(r.body.status).toBe('SUCCESS');
      expect(Object.keys(r.body.result)).toEqual(VM_KEYS);
      expect(r.body.result).toMatchObject({ uuid, alias: 'upd', owner: 'bob', qmp_socket: null, brand: 'hvm', snapshot_limit_manual: 7 });
      const empty = await s.req('PUT', '/api/vm/upd01/define/', { body: { alias: '' } });
      expect(empty.body.result.alias).toBe('upd01');
      const bad = await s.req('PUT', '/api/vm/upd01/define/', { body: { node: 'nowhere', owner: '' } });
      expect(bad.status).toBe(400);
      expect(bad.body.result).toEqual({
        node: ['Object with hostname=nowhere does not exist.'],
        owner: ['This field is required.'],
      });
      const log = await s.runtime.ctx.db
        .selectFrom('task_log')
        .selectAll()
        .where('msg', '=', 'Update server definition')
        .where('object_name', '=', 'upd01')
        .orderBy('id')
        .execute();
      // The failed update is not logged.
      expect(log).toHaveLength(2);
      expect(log[0]!.detail).toBe("owner='bob', brand='hvm', qmp_socket=None, snapshot_limit_manual=7");
      expect(log[0]!.flag).toBe(3);
    });

    it('moves a VM without disks to another node, and refuses it with disks (417)', async () => {
      const db = s.runtime.ctx.db;
      const now = new Date().toISOString();
      const node2 = await db
        .insertInto('node')
        .values({ hostname: 'node2.test', uuid: 'a7a7a7a7-0000-4000-8000-000000000002', status: 2, last_heartbeat: now, created: now })
        .returningAll()
        .executeTakeFirstOrThrow();
      await s.req('POST', '/api/vm/mov01/define', { body: {} });
      const moved = await s.req('PUT', '/api/vm/mov01/define', { body: { node: 'node2.test' } });
      expect(moved.status).toBe(200);
      expect(moved.body.result.node).toBe('node2.test');
      const back = await s.req('PUT', '/api/vm/mov01/define', { body: { node: s.node } });
      expect(back.body.result.node).toBe(s.node);
      const disk = await s.req('POST', '/api/vm/mov01/define/disk/1', { body: { size: 1 } });
      expect(disk.status).toBe(201);
      const refused = await s.req('PUT', '/api/vm/mov01/define', { body: { node: 'node2.test', alias: 'x' } });
      expect(refused.status).toBe(417);
      expect(refused.body).toEqual({ detail: 'Node cannot be changed while the VM has disks' });
      const after = await s.req('GET', '/api/vm/mov01/define');
      expect(after.body.result).toMatchObject({ node: s.node, alias: 'mov01', disks: 1 });
      await db.deleteFrom('node').where('id', '=', node2.id).execute();
    });

    it('deletes a VM without disks synchronously (200) with its snapshot definitions', async () => {
      const c = await s.req('POST', '/api/vm/del01/define', { body: {} });
      const uuid = c.body.result.uuid as string;
      const now = new Date().toISOString();
      await s.runtime.ctx.db
        .insertInto('snapshot_define')
        .values({
          vm_uuid: uuid,
          disk_real_id: 0,
          name: 'daily',
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
      const r = await s.req('DELETE', '/api/vm/del01/define');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ status: 'SUCCESS', result: null });
      expect((await s.req('GET', '/api/vm/del01/define')).status).toBe(404);
      const defs = await s.runtime.ctx.db.selectFrom('snapshot_define').select('id').where('vm_uuid', '=', uuid).execute();
      expect(defs).toHaveLength(0);
      const log = await s.runtime.ctx.db.selectFrom('task_log').selectAll().where('msg', '=', 'Delete server definition').execute();
      expect(log.map((l) => l.object_name)).toContain('del01');
    });
  });

  describe('permissions, scoping and HTTP', () => {
    it('lists VMs: Admin all of the DC, others their own; full=true gives objects', async () => {
      await s.req('POST', '/api/vm/own-alice/define', { body: { owner: 'alice' } });
      const admin = await s.req('GET', '/api/vm');
      expect(admin.status).toBe(200);
      expect(admin.body.result).toContain('own-alice');
      expect(admin.body.result).toContain('web01.example.com');
      expect([...admin.body.result].sort()).toEqual(admin.body.result);
      const mine = await s.req('GET', '/api/vm', { key: alice.key });
      expect(mine.body.result).toEqual(['full01', 'own-alice']);
      const full = await s.req('GET', '/api/vm', { key: alice.key, query: { full: 'true' } });
      expect(full.body.result.map((v: { hostname: string }) => v.hostname)).toEqual(['full01', 'own-alice']);
      expect(Object.keys(full.body.result[0])).toEqual(VM_KEYS);
      const notFull = await s.req('GET', '/api/vm', { key: alice.key, query: { full: 'false' } });
      expect(notFull.body.result).toEqual(['full01', 'own-alice']);
      expect((await s.req('GET', '/api/vm', { key: bob.key })).body.result).toEqual(['upd01']);
    });

    it('hides VMs of others (404) and needs Admin for writes (403)', async () => {
      const other = await s.req('GET', '/api/vm/web01.example.com/define', { key: alice.key });
      expect(other.status).toBe(404);
      expect(other.body).toEqual({ detail: 'VM not found' });
      const own = await s.req('GET', '/api/vm/own-alice/define', { key: alice.key });
      expect(own.status).toBe(200);
      for (const [method, path] of [
        ['POST', '/api/vm/alice-new/define'],
        ['PUT', '/api/vm/own-alice/define'],
        ['DELETE', '/api/vm/own-alice/define'],
      ] as const) {
        const r = await s.req(method, path, { key: alice.key, body: {} });
        expect(r.status, `${method} ${path}`).toBe(403);
        expect(r.body).toEqual({ detail: 'Permission denied' });
      }
      expect((await s.req('GET', '/api/vm/own-alice/define')).body.result.owner).toBe('alice');
      const anon = await s.req('GET', '/api/vm', { key: null });
      expect(anon.status).toBe(403);
    });

    it('answers under the DC prefix, and 404 for an unknown DC', async () => {
      const r = await s.req('GET', '/api/dc/main/vm/web01.example.com/define/');
      expect(r.status).toBe(200);
      expect(r.headers['es_dc']).toBe('main');
      expect(r.body.result.hostname).toBe('web01.example.com');
      const created = await s.req('POST', '/api/dc/main/vm/dcpref01/define', { body: {} });
      expect(created.status).toBe(201);
      const unknown = await s.req('GET', '/api/dc/nowhere/vm/web01.example.com/define');
      expect(unknown.status).toBe(404);
      expect(unknown.body).toEqual({ detail: 'Datacenter not found' });
    });

    it('keeps VMs in their DC', async () => {
      const db = s.runtime.ctx.db;
      await db
        .insertInto('dc')
        .values({ name: 'other', alias: 'other', access: 1, owner_id: null, settings: '{}', created: new Date().toISOString() })
        .execute();
      const r = await s.req('POST', '/api/dc/other/vm/otherdc01/define', { body: {} });
      expect(r.status).toBe(201);
      expect((await s.req('GET', '/api/vm/otherdc01/define')).status).toBe(404);
      expect((await s.req('GET', '/api/dc/other/vm')).body.result).toEqual(['otherdc01']);
      // Hostnames are unique across DCs.
      expect((await s.req('POST', '/api/vm/otherdc01/define', { body: {} })).status).toBe(406);
    });

    it('answers 405 for a method a view lacks, and OPTIONS with its description', async () => {
      const r = await s.req('PATCH', '/api/vm/web01.example.com/define', { body: {} });
      expect(r.status).toBe(405);
      expect(r.body).toEqual({ detail: 'Method "PATCH" not allowed.' });
      expect(r.headers['allow']).toBe('GET, POST, PUT, DELETE, OPTIONS');
      const post = await s.req('POST', '/api/vm', { body: {} });
      expect(post.status).toBe(405);
      expect(post.body).toEqual({ detail: 'Method "POST" not allowed.' });
      const opt = await s.req('OPTIONS', '/api/vm/web01.example.com/define');
      expect(opt.status).toBe(200);
      expect(opt.body.name).toBe('vm_define');
    });
  });
});
