/**
 * Backups in embedded mode with real restic: a file-driver VM disk backed up (type 2) to a second
 * storage of the same node, the source image overwritten, the backup restored into a second VM:
 * the bytes are identical. Verify re-reads the backup; after a pack file of the repository is
 * corrupted it answers damaged (status 5). The restic password stays out of the database and
 * every API answer.
 */
import { readdir, readFile, writeFile, open, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServer, type TestServer } from '../helpers/server.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';

const MB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

describe('backups, embedded (restic)', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('embedded backups need restic', reason);

  let s: TestServer & { cleanup(): Promise<void> };
  let src: string;
  let dst: string;
  const image = (path: string): string => join(s.storageRoot, 'storage', path);

  async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
    const fh = await open(image(path), 'r+');
    await fh.write(data, 0, data.length, offset);
    await fh.sync();
    await fh.close();
  }

  beforeAll(async () => {
    s = await withServer('sqlite', {
      storages: (root) => [
        { name: 'default', driver: 'file', root: join(root, 'storage') },
        { name: 'backup', driver: 'file', root: join(root, 'backup') },
      ],
    });
    for (const vm of ['web01', 'web02']) {
      expect((await s.req('POST', `/api/vm/${vm}/define/`, { body: {} })).status).toBe(201);
      const d = await s.req('POST', `/api/vm/${vm}/define/disk/1/`, { body: { size: 8 } });
      expect(d.status, d.text).toBe(201);
      if (vm === 'web01') src = d.body.result.path as string;
      else dst = d.body.result.path as string;
    }
    const def = await s.req('POST', '/api/vm/web01/define/backup/daily', {
      body: { type: 2, node: s.node, zpool: 'backup', schedule: '0 2 * * *', retention: 3 },
    });
    expect(def.status, def.text).toBe(201);
  }, 120_000);
  afterAll(() => s?.cleanup());

  it('backs up, and restores into another VM with identical bytes', async () => {
    await writeAt(src, 0, Buffer.from('first version of the disk'));
    await writeAt(src, 5 * MB, Buffer.alloc(64 * 1024, 7));
    const original = await readFile(image(src));

    const c = await s.stream('POST', '/api/vm/web01/backup/daily', { body: { note: 'before upgrade' } });
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    const list = await s.req('GET', '/api/vm/web01/backup', { query: { full: 'true' } });
    expect(list.status).toBe(200);
    expect(list.body.result).toHaveLength(1);
    const b = list.body.result[0];
    expect(Object.keys(b)).toEqual(['hostname', 'vm_uuid', 'vm', 'define', 'name', 'disk_id', 'type', 'node', 'zpool', 'created', 'status', 'size', 'time', 'note']);
    expect(b).toMatchObject({ hostname: 'web01', vm: 'web01', define: 'daily', disk_id: 1, type: 2, node: s.node, zpool: 'backup', status: 1, size: 8 * MB, note: 'before upgrade' });
    expect(b.name).toMatch(/^daily-\d{8}_\d{6}$/);
    const row = await s.runtime.ctx.db.selectFrom('backup').selectAll().executeTakeFirstOrThrow();
    expect(row.checksum).toBe(sha(original));
    // The snapshot the backup read is gone again; no snapshot row appeared.
    expect((await s.req('GET', '/api/vm/web01/snapshot/')).body.result).toEqual([]);
    expect(await readdir(join(s.storageRoot, 'storage', '.snapshots', src)).catch(() => [])).toEqual([]);

    // The source is overwritten; the backup goes into the second VM's disk.
    await writeAt(src, 0, Buffer.alloc(MB, 9));
    const r = await s.stream('PUT', `/api/vm/web01/backup/${b.name as string}`, { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
    expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
    expect(sha(await readFile(image(dst)))).toBe(sha(original));
    expect((await s.req('GET', `/api/vm/web01/backup/${b.name as string}`)).body.result.status).toBe(1);

    // Note only: synchronous, no task.
    const n = await s.req('PUT', `/api/vm/web01/backup/${b.name as string}`, { body: { note: 'kept' } });
    expect([n.status, n.body.result.note]).toEqual([200, 'kept']);

    // The password is a 0600 file in the data folder, in no answer and no row.
    const key = join(s.storageRoot, 'backup-keys', 'backup.restic-password');
    expect((await stat(key)).mode & 0o777).toBe(0o600);
    const secret = (await readFile(key, 'utf8')).trim();
    expect(secret.length).toBeGreaterThan(20);
    expect(JSON.stringify([list.body, c.final, r.final])).not.toContain(secret);
    const tasks = await s.runtime.ctx.db.selectFrom('task').selectAll().execute();
    expect(JSON.stringify(tasks)).not.toContain(secret);

    const m = await s.req('GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toContain('esnap_backups{vm="web01",disk="1",status="ok"} 1');
    expect(m.text).toContain(`esnap_backup_bytes{vm="web01",disk="1"} ${8 * MB}`);
    expect(m.text).toMatch(/esnap_backup_definition_last_success_timestamp_seconds\{vm="web01",disk="1",define="daily"\} [1-9]/);
    expect(m.text).toMatch(/esnap_backup_operation_duration_seconds_count\{operation="restore",result="success"\} 1/);
  }, 120_000);

  it('verify says ok, then damaged (status 5) after a pack file is corrupted', async () => {
    const name = (await s.req('GET', '/api/vm/web01/backup')).body.result[0] as string;
    const ok = await s.stream('PUT', `/api/vm/web01/backup/${name}`, { body: { verify: true } });
    expect(ok.finalStatus, JSON.stringify(ok.final)).toBe(200);
    const packs = (await filesUnder(join(s.storageRoot, 'backup', '.esnap-restic', 'data'))).filter((p) => !p.endsWith('.tmp'));
    expect(packs.length).toBeGreaterThan(0);
    for (const p of packs) {
      const buf = await readFile(p);
      // Bytes in the middle of the pack: blob data, whose MAC then fails (the header is at the end).
      for (let i = Math.floor(buf.length / 4); i < Math.floor(buf.length / 2); i += 16) buf[i] = buf[i]! ^ 0xff;
      await writeFile(p, buf);
    }
    const bad = await s.stream('PUT', `/api/vm/web01/backup/${name}`, { body: { verify: true } });
    expect(bad.finalStatus).toBe(400);
    expect(JSON.stringify(bad.final)).toContain('damaged');
    expect((await s.req('GET', `/api/vm/web01/backup/${name}`)).body.result.status).toBe(5);
    // A damaged backup is not restored.
    const r = await s.req('PUT', `/api/vm/web01/backup/${name}`, { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
    expect([r.status, r.body.detail]).toEqual([417, 'VM backup status is not OK']);
  }, 120_000);
});
