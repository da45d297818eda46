/**
 * Type 1 (dataset) backups over the API in embedded mode, on a real zfs-fuse pool: a VM disk on a
 * zfs storage backed up to a second zfs storage by `zfs send | zfs recv` through local pipes; a
 * full backup, then an incremental one after a change (fewer bytes, same checksum as the source
 * image); the base snapshot `is-<id>` stays on the source disk, hidden from the snapshot list and
 * never adopted by a sync; a rollback that destroys it makes the next backup full, said in the
 * task's detail; verify re-reads the image; a restore into a VM on a file storage gives identical
 * bytes. Type 1 onto a file storage answers Danube's 400. A restore into a zfs disk is a native
 * `zfs send | zfs recv` that replaces the disk's dataset: refused with 417 without force while the
 * disk has snapshots; with force (the default) the bytes are the backup's, the disk's snapshots
 * (and its own backup base) are gone from storage and database, nothing is left aside, and the
 * next backup of that disk is a full one.
 */
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { defineVmsWithBackup } from './fixtures.js';
import { platformUnavailable } from '../platform/require.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';

const MB = 1024 * 1024;
const runner = new NodeCommandRunner();
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function zfs(...argv: string[]): Promise<string> {
  const r = await runner.run(['zfs', ...argv], { env: { LC_ALL: 'C' } });
  if (r.code !== 0) throw new Error(`zfs ${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('type 1 (dataset) backups, embedded, zfs-fuse', async () => {
  const reason = await zfsUnavailable();
  if (reason !== null) return platformUnavailable('type 1 backups need zfs-fuse', reason);

  let pool: ZfsPool;
  let s: TestServer & { cleanup(): Promise<void> };
  let srcPath: string;
  let dstPath: string;

  async function srcImage(): Promise<string> {
    const mp = (await zfs('get', '-Hp', '-o', 'value', 'mountpoint', `${pool.name}/vms/${srcPath}`)).trim();
    return join(mp, 'disk.img');
  }
  async function scribble(offsetsMb: number[]): Promise<void> {
    const fh = await open(await srcImage(), 'r+');
    for (const o of offsetsMb) await fh.write(Buffer.alloc(MB, o + 1), 0, MB, o * MB);
    await fh.sync();
    await fh.close();
  }
  async function lastBackup(): Promise<Record<string, unknown>> {
    return (await s.runtime.ctx.db.selectFrom('backup').selectAll().orderBy('id', 'desc').executeTakeFirstOrThrow()) as unknown as Record<string, unknown>;
  }
  // A backup's name carries its second (Danube's `<bkpdef>-YYYYmmdd_HHMMSS`): two in the same second
  // collide (406 `Backup already exists`), so each waits for a second after the previous one's. That
  // second is the server's, read when the request arrives: the one after the answer is never earlier
  // (the second before the request could be: CI, a request sent at .999 named in the next second).
  let lastSecond = 0;
  async function backup(): Promise<{ detail: string }> {
    while (Math.floor(Date.now() / 1000) <= lastSecond) await new Promise((r) => setTimeout(r, 20));
    const c = await s.stream('POST', '/api/vm/web01/backup/daily', { body: {} });
    lastSecond = Math.floor(Date.now() / 1000);
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    return { detail: String((c.final as { result: { detail: string } }).result.detail) };
  }

  beforeAll(async () => {
    pool = await makeZfsPool(512);
    for (const ds of ['vms', 'bkp']) await zfs('create', `${pool.name}/${ds}`);
    s = await withServer('sqlite', {
      storages: (root) => [
        { name: 'default', driver: 'zfs', dataset: `${pool.name}/vms` },
        { name: 'backup', driver: 'zfs', dataset: `${pool.name}/bkp` },
        { name: 'files', driver: 'file', root: join(root, 'files') },
      ],
    });
    const paths = await defineVmsWithBackup(s, { web01: 'default', web02: 'files' }, { type: 1, node: s.node, zpool: 'backup', schedule: '0 2 * * *', retention: 5 });
    srcPath = paths['web01']!;
    dstPath = paths['web02']!;
  }, 180_000);
  afterAll(async () => {
    await s?.cleanup();
    await pool?.cleanup();
  });

  it('answers 400 for type 1 onto a storage that cannot receive a dataset', async () => {
    const r = await s.req('POST', '/api/vm/web01/define/backup/tofiles', { body: { type: 1, node: s.node, zpool: 'files', schedule: '0 3 * * *', retention: 1 } });
    expect(r.status).toBe(400);
    expect(r.body.result).toEqual({ type: ["Backup type dataset is not supported by the disk's storage."] });
  });

  it('full, then incremental; the base stays hidden; a rollback that destroys it makes the next one full; verify and restore', async () => {
    await scribble([0, 4, 8, 12, 16, 20, 24, 28]);
    const first = await backup();
    expect(first.detail).toMatch(/full=true/);
    const b1 = await lastBackup();
    // The SHA-256 of the send stream received, not of the image (docs/backups.md): no read of the whole image.
    expect(b1['checksum']).toMatch(/^stream:[0-9a-f]{64}$/);
    expect(b1['file_path']).toBe(`${pool.name}/bkp/${srcPath}-${String(b1['id'])}@is-${String(b1['id'])}`);

    // A snapshot the user takes before the change, for the rollback below.
    const snap = await s.stream('POST', '/api/vm/web01/snapshot/before/', { body: { disk_id: 1 } });
    expect(snap.finalStatus, JSON.stringify(snap.final)).toBe(200);
    await scribble([2]);
    const second = await backup();
    expect(second.detail).toMatch(/full=false/);
    const b2 = await lastBackup();
    const image2 = sha(await readFile(await srcImage()));
    expect(b2['checksum']).toMatch(/^stream:[0-9a-f]{64}$/);
    expect(b2['checksum']).not.toBe(b1['checksum']);
    expect(Number(b2['size'])).toBeLessThan(Number(b1['size']) / 4);
    expect(Number(b2['size'])).toBeLessThan(0.05 * 32 * MB + 256 * 1024);

    // The base of the next backup stays on the source disk, as is-<id>: never in the snapshot list, never adopted by a sync.
    const onDisk = await zfs('list', '-H', '-r', '-t', 'snapshot', '-o', 'name', `${pool.name}/vms/${srcPath}`);
    expect(onDisk).toContain(`@is-${String(b2['id'])}`);
    expect(onDisk).not.toContain(`@is-${String(b1['id'])}`); // the older base was released
    const listed = await s.req('GET', '/api/vm/web01/snapshot/', { query: { full: 'true' } });
    expect(listed.body.result.map((x: { name: string }) => x.name)).toEqual(['before']);
    const sync = await s.stream('PUT', '/api/vm/web01/snapshot/', { body: { disk_id: 1 } });
    expect(JSON.stringify(sync.final)).not.toMatch(/found/);
    expect((await s.req('GET', '/api/vm/web01/snapshot/', {})).body.result).toEqual(['before']);

    // Rollback to 'before' without force: is-<b2> is newer on storage but no snapshot of the VM (no 417); zfs
    // rollback -r destroys it, so the next backup is full and says why.
    const rb = await s.stream('PUT', '/api/vm/web01/snapshot/before/', { body: { disk_id: 1 } });
    expect(rb.finalStatus, JSON.stringify(rb.final)).toBe(200);
    const third = await backup();
    expect(third.detail).toMatch(/full=true/);
    expect(third.detail).toMatch(new RegExp(`base is-${String(b2['id'])} is no longer on the source disk \\(a rollback destroyed it\\): full backup`));
    const b3 = await lastBackup();
    expect(b3['checksum']).toMatch(/^stream:[0-9a-f]{64}$/);

    // Verify re-reads an older backup and the newest whole (a full zfs send into the hasher).
    for (const b of [b2, b3]) {
      const v = await s.stream('PUT', `/api/vm/web01/backup/${String(b['name'])}`, { body: { verify: true } });
      expect(v.finalStatus, JSON.stringify(v.final)).toBe(200);
      expect(JSON.stringify(v.final)).toMatch(/checksum=send:[0-9a-f]{64}/);
    }

    // Restore b2 into web02 (a file disk of the same size): its bytes are b2's.
    const r = await s.stream('PUT', `/api/vm/web01/backup/${String(b2['name'])}`, { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
    expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
    const restored = await readFile(join(s.storageRoot, 'files', dstPath));
    expect(sha(restored)).toBe(image2);
    b2name = String(b2['name']);
    b2image = image2;
  }, 600_000);

  let b2name = '';
  let b2image = '';
  it('restores into a zfs disk natively: the dataset is replaced, its snapshots go (417 without force), the next backup is full', async () => {
    expect(b2name).not.toBe('');
    const disk = `${pool.name}/vms/${srcPath}`;
    const snapshotsOnDisk = async (): Promise<string[]> =>
      (await zfs('list', '-H', '-r', '-t', 'snapshot', '-o', 'name', disk)).split('\n').filter(Boolean).map((n) => n.split('@')[1]!);
    // web01's disk holds the user's snapshot 'before' and the base of its next backup.
    expect((await s.req('GET', '/api/vm/web01/snapshot/', {})).body.result).toEqual(['before']);
    expect(await snapshotsOnDisk()).toEqual(expect.arrayContaining(['is-' + String((await lastBackup())['id'])]));
    await scribble([6, 10]);
    const refused = await s.req('PUT', `/api/vm/web01/backup/${b2name}`, { body: { target_hostname_or_uuid: 'web01', target_disk_id: 1, force: false } });
    expect(refused.status, refused.text).toBe(417);
    expect(refused.body.detail).toBe('VM has snapshots');

    const r = await s.stream('PUT', `/api/vm/web01/backup/${b2name}`, { body: { target_hostname_or_uuid: 'web01', target_disk_id: 1 } });
    expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
    expect(JSON.stringify(r.final)).toMatch(/the disk was replaced by the received dataset; its snapshots are gone/);
    expect(sha(await readFile(await srcImage()))).toBe(b2image);
    // The disk's snapshots went with its old dataset: none on storage, no rows, nothing left aside.
    expect(await snapshotsOnDisk()).toEqual([]);
    expect((await s.req('GET', '/api/vm/web01/snapshot/', {})).body.result).toEqual([]);
    const datasets = await zfs('list', '-H', '-r', '-o', 'name', `${pool.name}/vms`);
    expect(datasets).not.toMatch(/-esnap-restore-/);
    // The backup's own base went too: the next backup is full and says why.
    const next = await backup();
    expect(next.detail).toMatch(/full=true/);
    expect(next.detail).toMatch(/is no longer on the source disk/);
    expect(await snapshotsOnDisk()).toEqual(['is-' + String((await lastBackup())['id'])]);
  }, 600_000);
});
