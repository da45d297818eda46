/**
 * Type 1 (dataset) backups of a btrfs disk over the API in embedded mode, on a real btrfs loop
 * filesystem: `btrfs send | btrfs receive` into a second btrfs storage, full then incremental, and
 * the native restore back into the VM's own btrfs disk (`btrfs send` of the backup into `btrfs
 * receive` in the storage's staging folder, the received subvolume swapped in for the disk).
 * Refused with 417 without force while the disk has snapshots, as any restore; with force the bytes
 * are the backup's, and the disk's snapshots stay (on btrfs they are subvolumes of their own, not
 * part of the disk's), on storage and in the list; nothing is left in the staging folder or beside
 * the disk; a rollback to the kept snapshot still works; the next backup, restored into a file
 * disk, gives the restored disk's bytes.
 */
import { createHash } from 'node:crypto';
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServer, type TestServer } from '../helpers/server.js';
import { defineVmsWithBackup } from './fixtures.js';
import { platformUnavailable } from '../platform/require.js';
import { loopFsUnavailable, makeLoopFs, type LoopFs } from '../platform/loopfs.js';

const MB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('type 1 (dataset) backups of a btrfs disk, embedded, native restore', async () => {
  const reason = await loopFsUnavailable('btrfs');
  if (reason !== null) return platformUnavailable('btrfs dataset backups need a btrfs loop filesystem', reason);

  let fs: LoopFs;
  let s: TestServer & { cleanup(): Promise<void> };
  let srcPath: string;
  let dstPath: string;
  const vmsRoot = (): string => join(fs.mountpoint, 'vms');
  const image = (): string => join(vmsRoot(), srcPath, 'disk.img');

  async function scribble(offsetsMb: number[], fill: number): Promise<void> {
    const fh = await open(image(), 'r+');
    for (const o of offsetsMb) await fh.write(Buffer.alloc(MB, fill + o), 0, MB, o * MB);
    await fh.sync();
    await fh.close();
  }
  async function lastBackup(): Promise<Record<string, unknown>> {
    return (await s.runtime.ctx.db.selectFrom('backup').selectAll().orderBy('id', 'desc').executeTakeFirstOrThrow()) as unknown as Record<string, unknown>;
  }
  // Backup names carry their second: each backup waits for a second after the previous answer (see backup.dataset.test.ts).
  let lastSecond = 0;
  async function backup(): Promise<{ detail: string; row: Record<string, unknown> }> {
    while (Math.floor(Date.now() / 1000) <= lastSecond) await new Promise((r) => setTimeout(r, 20));
    const c = await s.stream('POST', '/api/vm/web01/backup/daily', { body: {} });
    lastSecond = Math.floor(Date.now() / 1000);
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    return { detail: String((c.final as { result: { detail: string } }).result.detail), row: await lastBackup() };
  }
  /** Every name under the storage's root that a swap or a receive leaves behind while it runs. */
  async function leftovers(): Promise<string[]> {
    const names = (await readdir(vmsRoot(), { recursive: true })).map(String);
    return names.filter((n) => /esnap-new|esnap-old/.test(n) || (n.startsWith('.esnap-receive/') && n !== '.esnap-receive'));
  }

  beforeAll(async () => {
    fs = await makeLoopFs('btrfs', 512);
    s = await withServer('sqlite', {
      storages: (root) => [
        { name: 'default', driver: 'btrfs', root: vmsRoot() },
        { name: 'backup', driver: 'btrfs', root: join(fs.mountpoint, 'bkp') },
        { name: 'files', driver: 'file', root: join(root, 'files') },
      ],
    });
    const paths = await defineVmsWithBackup(s, { web01: 'default', web02: 'files' }, { type: 1, node: s.node, zpool: 'backup', schedule: '0 2 * * *', retention: 5 });
    srcPath = paths['web01']!;
    dstPath = paths['web02']!;
  }, 180_000);
  afterAll(async () => {
    await s?.cleanup();
    await fs?.cleanup();
  });

  it('restores a backup into the btrfs disk natively: the backup\'s bytes, the disk\'s snapshots kept, nothing left behind', async () => {
    await scribble([0, 4, 8, 12, 16, 20, 24, 28], 1);
    const first = await backup();
    expect(first.detail).toMatch(/full=true/);
    const snap = await s.stream('POST', '/api/vm/web01/snapshot/before/', { body: { disk_id: 1 } });
    expect(snap.finalStatus, JSON.stringify(snap.final)).toBe(200);
    const beforeImage = sha(await readFile(image()));
    await scribble([2, 6], 50);
    const second = await backup();
    expect(second.detail).toMatch(/full=false/);
    const b2 = second.row;
    const b2image = sha(await readFile(image()));
    expect(Number(b2['size'])).toBeLessThan(Number(first.row['size']) / 2);

    // The disk changes after the backup; the restore brings the backup's bytes back.
    await scribble([10, 14], 90);
    expect(sha(await readFile(image()))).not.toBe(b2image);
    const refused = await s.req('PUT', `/api/vm/web01/backup/${String(b2['name'])}`, { body: { target_hostname_or_uuid: 'web01', target_disk_id: 1, force: false } });
    expect(refused.status, refused.text).toBe(417);
    expect(refused.body.detail).toBe('VM has snapshots');
    expect(sha(await readFile(image()))).not.toBe(b2image);

    const r = await s.stream('PUT', `/api/vm/web01/backup/${String(b2['name'])}`, { body: { target_hostname_or_uuid: 'web01', target_disk_id: 1 } });
    expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
    expect(JSON.stringify(r.final)).not.toMatch(/snapshots are gone/);
    expect(sha(await readFile(image()))).toBe(b2image);
    // The native path ran: only a receive makes the staging folder (the image path writes a new
    // subvolume beside the disk), and it is empty again. The disk is writable (a received
    // subvolume is read-only until the receive's last step makes it writable).
    expect(await readdir(join(vmsRoot(), '.esnap-receive'))).toEqual([]);
    await scribble([30], 7);
    expect(await leftovers()).toEqual([]);

    // The disk's snapshot stays, on storage and in the list, and still rolls back.
    expect((await s.req('GET', '/api/vm/web01/snapshot/', {})).body.result).toEqual(['before']);
    const rb = await s.stream('PUT', '/api/vm/web01/snapshot/before/', { body: { disk_id: 1, force: true } });
    expect(rb.finalStatus, JSON.stringify(rb.final)).toBe(200);
    expect(sha(await readFile(image()))).toBe(beforeImage);

    // The next backup of the disk is whole: restored into a file disk, it gives the disk's bytes.
    await scribble([18], 120);
    const now = sha(await readFile(image()));
    const third = await backup();
    const into = await s.stream('PUT', `/api/vm/web01/backup/${String(third.row['name'])}`, { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
    expect(into.finalStatus, JSON.stringify(into.final)).toBe(200);
    expect(sha(await readFile(join(s.storageRoot, 'files', dstPath)))).toBe(now);
  }, 600_000);
});
