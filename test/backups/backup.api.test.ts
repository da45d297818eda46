/**
 * Backups on the wire without an engine (rows written by the test): lists with Danube's keys,
 * filters and order, hidden node for non-admins, the node list, the checks of create, restore
 * and delete in Danube's order with its messages, backups of a deleted VM reached through its
 * original hostname, and `esnap backup export-key`. On SQLite and PostgreSQL.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { addUser, addVm, setDcSettings, setVmStatus } from '../definitions/fixtures.js';
import { runEsnap } from '../helpers/esnap-process.js';
import { deleteVmRows } from '../../src/vms/vm.repository.js';

type Server = TestServer & { cleanup(): Promise<void> };

async function addBackup(s: TestServer, vmUuid: string, hostname: string, name: string, o: { status?: number; size?: number; defineId?: number | null; diskMb?: number } = {}): Promise<number> {
  const db = s.runtime.ctx.db;
  const node = await db.selectFrom('node').selectAll().where('hostname', '=', s.node).executeTakeFirstOrThrow();
  const storage = await db.selectFrom('node_storage').selectAll().where('node_id', '=', node.id).executeTakeFirstOrThrow();
  const dc = await db.selectFrom('dc').select('id').where('name', '=', 'main').executeTakeFirstOrThrow();
  const now = new Date().toISOString();
  const r = await db
    .insertInto('backup')
    .values({
      dc_id: dc.id, vm_uuid: vmUuid, vm_hostname: hostname, vm_disk_id: 1, disk_real_id: 0, disk_size_mb: o.diskMb ?? 10, define_id: o.defineId ?? null,
      name, status: o.status ?? 1, type: 2, node_id: node.id, node_hostname: node.hostname, storage_id: storage.id, storage_name: storage.name,
      storage_driver: 'file', source_node_hostname: node.hostname, source_storage_name: storage.name, source_storage_driver: 'file',
      file_path: 'bkp.raw', restic_id: 'abcdef12', base_snapshot: null, checksum: 'x', size: o.size ?? 1000, time: 3, note: '', last: 0, fsfreeze: 0,
      task_id: null, status_change: now, created: now, changed: now,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return r.id;
}

forEachDb('backups API', (kind) => {
  let s: Server;
  let vm: string;
  let user: { id: number; key: string };

  beforeAll(async () => {
    s = await withServer(kind);
    user = await addUser(s, 'bob');
    vm = await addVm(s, 'web.test', { owner: user.id });
    await addVm(s, 'other.test', { status: 1 });
    await addBackup(s, vm, 'web.test', 'daily-20260101_010000', { size: 300 });
    await addBackup(s, vm, 'web.test', 'daily-20260102_010000', { size: 100 });
    await addBackup(s, vm, 'web.test', 'gone-20260101_010000', { status: 4 });
  });
  afterAll(() => s.cleanup());

  it('lists names (newest first), full objects with Danube keys, order_by, and hides the node from non-admins', async () => {
    const names = await s.req('GET', '/api/vm/web.test/backup');
    expect(names.body.result).toEqual(['gone-20260101_010000', 'daily-20260102_010000', 'daily-20260101_010000']);
    const full = await s.req('GET', '/api/vm/web.test/backup', { query: { full: 'true', order_by: 'size,name' } });
    expect(full.body.result.map((b: { name: string }) => b.name)).toEqual(['daily-20260102_010000', 'daily-20260101_010000', 'gone-20260101_010000']);
    expect(Object.keys(full.body.result[0])).toEqual(['hostname', 'vm_uuid', 'vm', 'define', 'name', 'disk_id', 'type', 'node', 'zpool', 'created', 'status', 'size', 'time', 'note']);
    expect(full.body.result[0].node).toBe(s.node);
    const own = await s.req('GET', '/api/vm/web.test/backup', { query: { full: 'true' }, key: user.key });
    expect(own.body.result[0].node).toBeNull();
    expect((await s.req('GET', '/api/vm/web.test/backup', { query: { order_by: 'nope' } })).status).toBe(412);
    expect((await s.req('GET', '/api/vm/web.test/backup', { query: { disk_id: '9' } })).body).toEqual({ detail: 'Invalid disk_id' });
    const node = await s.req('GET', `/api/node/${s.node}/backup`, { query: { full: 'true' } });
    expect(node.body.result[0].dc).toBe('main');
    expect((await s.req('GET', `/api/node/${s.node}/backup`, { key: user.key })).status).toBe(403);
  });

  it('create: non-admins 403, unknown definition 404, DC backup size limit 417', async () => {
    expect((await s.req('POST', '/api/vm/web.test/backup/nope', { body: {}, key: user.key })).status).toBe(403);
    expect((await s.req('POST', '/api/vm/web.test/backup/nope', { body: {} })).body).toEqual({ detail: 'Backup definition not found' });
    const def = await s.req('POST', '/api/vm/web.test/define/backup/daily', { body: { type: 2, node: s.node, zpool: 'default', schedule: '0 1 * * *', retention: 3 } });
    expect(def.status, def.text).toBe(201);
    await setDcSettings(s, { VMS_VM_BACKUP_DC_SIZE_LIMIT: 0 });
    const r = await s.req('POST', '/api/vm/web.test/backup/daily', { body: {} });
    expect([r.status, r.body]).toEqual([417, { detail: 'DC backup size limit reached' }]);
    await setDcSettings(s, {});
  });

  it("restore checks: fields, status, size, the target's status; verify of a lost backup 417; note", async () => {
    const path = '/api/vm/web.test/backup/daily-20260101_010000';
    const bad = await s.req('PUT', path, { body: {} });
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.body.result)).toEqual(['target_hostname_or_uuid', 'target_disk_id']);
    expect((await s.req('PUT', '/api/vm/web.test/backup/gone-20260101_010000', { body: { target_hostname_or_uuid: 'other.test', target_disk_id: 1 } })).body).toEqual({ detail: 'VM backup status is not OK' });
    expect((await s.req('PUT', '/api/vm/web.test/backup/gone-20260101_010000', { body: { verify: true } })).body).toEqual({ detail: 'VM backup status is not OK' });
    expect((await s.req('PUT', path, { body: { target_hostname_or_uuid: 'other.test', target_disk_id: 5 } })).body).toEqual({ detail: 'Invalid target_disk_id' });
    const disk = await s.runtime.ctx.db.selectFrom('vm_disk').select('size_mb').where('vm_uuid', '=', vm).executeTakeFirstOrThrow();
    expect((await s.req('PUT', path, { body: { target_hostname_or_uuid: 'other.test', target_disk_id: 1 } })).body).toEqual(
      disk.size_mb === 10 ? { detail: 'VM is not stopped' } : { detail: 'Disk size mismatch' },
    );
    await s.runtime.ctx.db.updateTable('backup').set({ disk_size_mb: disk.size_mb }).execute();
    await setVmStatus(s, vm, 2);
    expect((await s.req('PUT', path, { body: { target_hostname_or_uuid: 'web.test', target_disk_id: 1 } })).body).toEqual({ detail: 'VM is not stopped' });
    const n = await s.req('PUT', path, { body: { note: 'keep me' } });
    expect([n.status, n.body.result.note]).toEqual([200, 'keep me']);
    expect((await s.req('PUT', path, { body: { note: 'x'.repeat(129) } })).status).toBe(400);
  });

  it('delete: a lost backup leaves the database at once; bulk delete needs a list', async () => {
    const r = await s.req('DELETE', '/api/vm/web.test/backup/gone-20260101_010000', { body: {} });
    expect([r.status, r.body.result]).toEqual([200, { message: 'Backup successfully deleted from DB' }]);
    expect((await s.req('DELETE', '/api/vm/web.test/backup', { body: { bkpnames: 'x' } })).body.result).toBe('Invalid bkpnames');
    expect((await s.req('DELETE', '/api/vm/web.test/backup', { body: { bkpnames: ['nope'] } })).body).toEqual({ detail: 'Backup not found' });
  });

  it("backups of a deleted VM stay, reached through the original hostname (admins)", async () => {
    await s.runtime.ctx.db.transaction().execute((trx) => deleteVmRows(trx, vm));
    const names = await s.req('GET', '/api/vm/web.test/backup', { query: { full: 'true' } });
    expect(names.body.result.map((b: { name: string; vm: string | null; vm_uuid: string | null }) => [b.name, b.vm, b.vm_uuid])).toEqual([
      ['daily-20260102_010000', null, null],
      ['daily-20260101_010000', null, null],
    ]);
    expect((await s.req('GET', '/api/vm/web.test/backup/daily-20260101_010000')).body.result.note).toBe('keep me');
    expect((await s.req('GET', '/api/vm/web.test/backup', { key: user.key })).status).toBe(404);
    expect(await s.runtime.ctx.db.selectFrom('backup_define').selectAll().execute()).toEqual([]);
  });
});

it('esnap backup export-key prints the password of a storage, and names a missing one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-key-'));
  try {
    await mkdir(join(dir, 'backup-keys'), { recursive: true });
    await writeFile(join(dir, 'backup-keys', 'vault.restic-password'), 'secret-words\n', { mode: 0o600 });
    const ok = await runEsnap(['backup', 'export-key', 'vault'], { ESNAP_DATA_DIR: dir });
    expect([ok.code, ok.stdout]).toEqual([0, 'secret-words\n']);
    const missing = await runEsnap(['backup', 'export-key', 'other'], { ESNAP_DATA_DIR: dir });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no repository has been made on it yet');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
