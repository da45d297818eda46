/**
 * Backup definitions on the wire (Danube's api/vm/backup): fields and key order, the node and zpool
 * checks with Danube's messages, esnap's type 1 rule, type fixed after creation, non-admins'
 * hidden node, lists, the node list, and nothing written on a refusal. On SQLite and PostgreSQL.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { addUser, addVm, setDcSettings } from '../definitions/fixtures.js';
import { addNode, bkpDefRow, putVmOnDriver } from './fixtures.js';

type Server = TestServer & { cleanup(): Promise<void> };

forEachDb('backup definitions', (kind) => {
  let s: Server;
  let vm: string;
  let zvm: string;
  let user: { id: number; key: string };
  const body = { type: 2, node: 'bk1', zpool: 'files', schedule: '0 2 * * *', retention: 7 };

  beforeAll(async () => {
    s = await withServer(kind);
    user = await addUser(s, 'olga');
    vm = await addVm(s, 'bk.test', { owner: user.id });
    zvm = await addVm(s, 'zfs.test');
    await putVmOnDriver(s, zvm, 'tank', 'zfs');
    await addNode(s, 'bk1', { files: 'file', pool: 'zfs', bt: 'btrfs' });
    await addNode(s, 'compute2', { files: 'file' }, false);
  });
  afterAll(() => s.cleanup());

  it('POST creates a definition with Danube keys in order, then GET shows it', async () => {
    const r = await s.req('POST', '/api/vm/bk.test/define/backup/nightly', { body: { ...body, desc: 'off-host', bwlimit: 1000 } });
    expect(r.status).toBe(201);
    expect(Object.keys(r.body.result)).toEqual([
      'hostname', 'vm_uuid', 'dc', 'name', 'disk_id', 'type', 'node', 'zpool', 'desc', 'bwlimit',
      'active', 'schedule', 'retention', 'compression', 'fsfreeze', 'tz', 'catchup',
    ]);
    expect(r.body.result).toMatchObject({
      hostname: 'bk.test', vm_uuid: vm, dc: 'main', name: 'nightly', disk_id: 1, type: 2, node: 'bk1', zpool: 'files',
      desc: 'off-host', bwlimit: 1000, active: true, schedule: '0 2 * * *', retention: 7, compression: 0, fsfreeze: false, tz: 'UTC', catchup: true,
    });
    const g = await s.req('GET', '/api/vm/bk.test/define/backup/nightly', { query: { extended: 'true' } });
    expect(g.status).toBe(200);
    expect(g.body.result.backups).toBe(0);
    expect(g.body.result.next_run).toEqual(expect.any(String));
    const log = await s.runtime.ctx.db.selectFrom('task_log').selectAll().where('msg', '=', 'Create server backup definition').executeTakeFirstOrThrow();
    expect(log.detail).toContain("bkpdef='nightly'");
    expect((await s.req('POST', '/api/vm/bk.test/define/backup/nightly', { body })).body).toEqual({ detail: 'Backup definition already exists' });
  });

  it('an unknown node and a node that is not a backup node both answer Danube\'s message; nothing is written', async () => {
    for (const node of ['nope', 'compute2']) {
      const r = await s.req('POST', '/api/vm/bk.test/define/backup/x1', { body: { ...body, node } });
      expect(r.status).toBe(400);
      expect(r.body.result).toEqual({ node: [`Object with hostname=${node} does not exist.`] });
    }
    const z = await s.req('POST', '/api/vm/bk.test/define/backup/x1', { body: { ...body, zpool: 'missing' } });
    expect(z.status).toBe(400);
    expect(z.body.result).toEqual({ zpool: ['Zpool does not exist on node.'] });
    expect(await bkpDefRow(s, vm, 'x1')).toBeUndefined();
  });

  it('type 1 needs a disk and a backup storage of the same native-send driver', async () => {
    const msg = { type: ["Backup type dataset is not supported by the disk's storage."] };
    // Danube's default type is 1: a file-driver disk refuses it.
    const { type: _t, ...noType } = body;
    const r1 = await s.req('POST', '/api/vm/bk.test/define/backup/ds', { body: noType });
    expect([r1.status, r1.body.result]).toEqual([400, msg]);
    // zfs disk onto a btrfs backup storage: refused; onto a zfs one: accepted.
    const r2 = await s.req('POST', '/api/vm/zfs.test/define/backup/ds', { body: { ...body, type: 1, zpool: 'bt' } });
    expect([r2.status, r2.body.result]).toEqual([400, msg]);
    const r3 = await s.req('POST', '/api/vm/zfs.test/define/backup/ds', { body: { ...body, type: 1, zpool: 'pool' } });
    expect(r3.status).toBe(201);
    expect(r3.body.result.type).toBe(1);
    // Moving it to a storage that cannot receive natively is refused too; the row keeps its storage.
    const r4 = await s.req('PUT', '/api/vm/zfs.test/define/backup/ds', { body: { zpool: 'files' } });
    expect([r4.status, r4.body.result]).toEqual([400, msg]);
    expect((await s.req('GET', '/api/vm/zfs.test/define/backup/ds')).body.result.zpool).toBe('pool');
  });

  it('field errors come in Danube field order, with choice messages', async () => {
    const r = await s.req('POST', '/api/vm/bk.test/define/backup/bad', {
      body: { type: 3, node: 'bk1', zpool: 'files', schedule: 'nope', retention: -1, compression: 9 },
    });
    expect(r.status).toBe(400);
    expect(Object.keys(r.body.result)).toEqual(['type', 'schedule', 'retention', 'compression']);
    expect(r.body.result.type).toEqual(['Select a valid choice. 3 is not one of the available choices.']);
    expect(r.body.result.compression).toEqual(['Select a valid choice. 9 is not one of the available choices.']);
    const miss = await s.req('POST', '/api/vm/bk.test/define/backup/bad', { body: { type: 2, schedule: '0 1 * * *', retention: 1 } });
    expect(miss.body.result).toEqual({ node: ['This field is required.'] });
    expect(await bkpDefRow(s, vm, 'bad')).toBeUndefined();
  });

  it('PUT updates fields but never the type; DELETE removes; 404 after', async () => {
    const p = await s.req('PUT', '/api/vm/bk.test/define/backup/nightly', { body: { type: 1, retention: 3, bwlimit: null, active: false } });
    expect(p.status).toBe(200);
    expect(p.body.result).toMatchObject({ type: 2, retention: 3, bwlimit: null, active: false });
    expect((await bkpDefRow(s, vm, 'nightly'))?.next_run).toBeNull();
    await s.req('POST', '/api/vm/bk.test/define/backup/gone', { body });
    const d = await s.req('DELETE', '/api/vm/bk.test/define/backup/gone');
    expect(d.status).toBe(200);
    const g = await s.req('GET', '/api/vm/bk.test/define/backup/gone');
    expect([g.status, g.body]).toEqual([404, { detail: 'Backup definition not found' }]);
  });

  it('lists: names, full objects, disk filter, the node list (SuperAdmin), the DC definition limit', async () => {
    expect((await s.req('GET', '/api/vm/bk.test/define/backup')).body.result).toEqual(['nightly']);
    const all = await s.req('GET', '/api/vm/define/backup', { query: { order_by: 'name' } });
    expect(all.body.result).toEqual(['ds', 'nightly']);
    const full = await s.req('GET', '/api/vm/define/backup', { query: { full: 'true', order_by: '-name' } });
    expect(full.body.result.map((o: { name: string }) => o.name)).toEqual(['nightly', 'ds']);
    expect((await s.req('GET', '/api/vm/define/backup', { query: { order_by: 'size' } })).status).toBe(412);
    expect((await s.req('GET', '/api/node/bk1/define/backup', { query: { order_by: 'name' } })).body.result).toEqual(['ds', 'nightly']);
    expect((await s.req('GET', '/api/node/bk1/define/backup', { key: user.key })).status).toBe(403);
    await setDcSettings(s, { VMS_VM_BACKUP_DEFINE_LIMIT: 1 });
    const lim = await s.req('POST', '/api/vm/bk.test/define/backup/second', { body });
    expect([lim.status, lim.body.result]).toEqual([400, { non_field_errors: ['Maximum number of backup definitions reached.'] }]);
    await setDcSettings(s, { VMS_VM_BACKUP_ENABLED: false });
    expect((await s.req('GET', '/api/vm/define/backup')).status).toBe(404);
    await setDcSettings(s, {});
  });

  it("the server's own node is a backup node (embedded): a type 2 definition onto its own storage", async () => {
    const r = await s.req('POST', '/api/vm/bk.test/define/backup/local', { body: { ...body, node: s.node, zpool: 'default' } });
    expect(r.status).toBe(201);
    expect(r.body.result).toMatchObject({ node: s.node, zpool: 'default', type: 2 });
    await s.req('DELETE', '/api/vm/bk.test/define/backup/local');
  });

  it('a non-admin owner reads own definitions without the node, and cannot write', async () => {
    const g = await s.req('GET', '/api/vm/bk.test/define/backup/nightly', { key: user.key });
    expect(g.status).toBe(200);
    expect(g.body.result.node).toBeNull();
    expect(g.body.result.zpool).toBe('files');
    const l = await s.req('GET', '/api/vm/define/backup', { key: user.key, query: { full: 'true' } });
    expect(l.body.result.map((o: { name: string; node: unknown }) => [o.name, o.node])).toEqual([['nightly', null]]);
    const w = await s.req('PUT', '/api/vm/bk.test/define/backup/nightly', { key: user.key, body: { retention: 1 } });
    expect(w.status).toBe(403);
    expect((await bkpDefRow(s, vm, 'nightly'))?.retention).toBe(3);
  });
});
