/**
 * The issue's done-when as one flow, on PostgreSQL with two agents (two nodes) and real engines:
 *
 * - compute1: a qcow2 storage (web01's disk) and a file storage (web03's) behind a private sshd on a loopback port (its own host key, the
 *   authorized-keys file compute1's agent maintains, the built forced command);
 * - backup1: a backup node (ESNAP_BACKUP_NODE=1) with a restic storage `backup` and a file storage
 *   `default` for a VM of its own.
 *
 * A type 2 backup of a qcow2 disk of compute1 is made through the API: backup1 pulls it over SSH
 * (`send image`) into restic. It is restored through the API over SSH into a second VM on compute1
 * (`receive`, announced by the server), then compute1's qcow2 storage is destroyed and the backup is
 * restored on backup1 into a VM there: the bytes are those of the snapshot the backup read.
 *
 * Type 1 on zfs-fuse (compute1's dataset storage `ztank`, backup1's `zbkp`): a full backup, then an
 * incremental one after a change, both pulled over SSH (`send dataset`); compute1's dataset is
 * destroyed and both backups are restored on backup1 with the bytes they were taken with. Before
 * that, the incremental one is restored over SSH into a zfs disk on compute1 natively (the disk's
 * dataset replaced, its snapshot gone with it).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTempDirs } from '../helpers/temp-dirs.js';
import { platformUnavailable, requirePlatform } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';
import { qemuUnavailable } from '../platform/qemu.js';
import { sshdUnavailable } from '../platform/sshd.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';
import { ZfsDriver } from '../../src/storage/zfs/zfs.driver.js';
import { destroyDataset, guestSha, MiB, must, runner, sha256, startBackupCluster, type BackupCluster } from './backup-cluster.js';

describe('backups in a cluster: type 2 from qcow2 over SSH, restored on both nodes', async () => {
  const reason = (await sshdUnavailable()) ?? (await resticUnavailable()) ?? (await qemuUnavailable());
  if (reason !== null) return platformUnavailable('cluster backups over SSH', reason);

  const tempDir = useTempDirs();
  let cluster: BackupCluster;
  let root: string;
  // Type 1 on zfs-fuse: a dataset `src` (compute1's storage `ztank`) and `bkp` (backup1's `zbkp`) of one pool.
  const zfsReason = await zfsUnavailable();
  let pool: ZfsPool | null = null;

  beforeAll(async () => {
    root = await tempDir('esnap-bkp-cluster-');
    if (zfsReason === null) {
      pool = await makeZfsPool(320);
      for (const ds of ['src', 'bkp']) await must(['zfs', 'create', `${pool.name}/${ds}`]);
    }
    const zfs = (name: string, ds: string) => (pool ? [{ name, driver: 'zfs', dataset: `${pool.name}/${ds}` }] : []);
    cluster = await startBackupCluster(root, {
      compute: [{ name: 'qcow', driver: 'qcow2', root: join(root, 'compute-qcow') }, ...zfs('ztank', 'src')],
      backup: zfs('zbkp', 'bkp'),
    });
  }, 180_000);
  afterAll(async () => {
    await cluster?.stop();
    if (pool) {
      for (const ds of ['bkp', 'src']) await destroyDataset(`${pool.name}/${ds}`);
      await pool.cleanup();
    }
  });

  it('backs up over SSH, restores over SSH on the source node, and on the backup node after the source storage is gone', async () => {
    const s = cluster.server;
    const web01 = await cluster.vm('compute1', 'web01', 32);
    const web03 = await cluster.vm('compute1', 'web03', 32);
    const web02 = await cluster.vm('backup1', 'web02', 32);
    // web01's disk moves to compute1's qcow2 storage: a real qcow2 image with data in it.
    const src = join(root, 'compute-qcow', await cluster.moveDisk(web01, 'compute1', 'qcow'));
    await must(['qemu-img', 'create', '-q', '-f', 'qcow2', src, `${32 * MiB}`]);
    await must(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0xa5 7M 3M', '-c', 'write -P 0x11 31M 1M', src]);
    const original = await guestSha(src, root);

    const def = await s.req('POST', '/api/vm/web01/define/backup/daily', { body: { type: 2, node: 'backup1', zpool: 'backup', schedule: '0 2 * * *', retention: 3 } });
    expect(def.status, def.text).toBe(201);
    const c = await s.stream('POST', '/api/vm/web01/backup/daily', { body: {} });
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    const list = await s.req('GET', '/api/vm/web01/backup', { query: { full: 'true' } });
    expect(list.body.result).toHaveLength(1);
    const b = list.body.result[0] as { name: string; node: string; status: number; size: number };
    expect(b).toMatchObject({ node: 'backup1', status: 1, size: 32 * MiB });
    const row = await s.runtime.ctx.db.selectFrom('backup').select('checksum').where('name', '=', b.name).executeTakeFirstOrThrow();
    expect(row.checksum).toBe(original);

    // Restore into web03 on compute1: backup1 streams `restic dump` over SSH into compute1's receive.
    const r1 = await s.stream('PUT', `/api/vm/web01/backup/${b.name}`, { body: { target_hostname_or_uuid: 'web03', target_disk_id: 1 } });
    expect(r1.finalStatus, JSON.stringify(r1.final)).toBe(200);
    expect(await sha256(web03.diskPaths[0]!)).toBe(original);

    // The source storage is lost; the backup (on backup1) is still listed and restorable on backup1.
    await rm(join(root, 'compute-qcow'), { recursive: true, force: true });
    const r2 = await s.stream('PUT', `/api/vm/web01/backup/${b.name}`, { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
    expect(r2.finalStatus, JSON.stringify(r2.final)).toBe(200);
    expect(await sha256(web02.diskPaths[0]!)).toBe(original);

    // Verify re-reads the backup on backup1.
    const v = await s.stream('PUT', `/api/vm/web01/backup/${b.name}`, { body: { verify: true } });
    expect(v.finalStatus, JSON.stringify(v.final)).toBe(200);
  }, 600_000);

  it('type 1 on zfs-fuse: full, then incremental over SSH; restored on the backup node after the source dataset is gone', async (ctx) => {
    if (!pool) return requirePlatform(`type 1 on zfs-fuse: ${zfsReason}`) ? undefined : ctx.skip();
    const s = cluster.server;
    const db = s.runtime.ctx.db;
    const vm = await cluster.vm('compute1', 'db01', 24);
    const target = await cluster.vm('backup1', 'db02', 24);
    const path = await cluster.moveDisk(vm, 'compute1', 'ztank');
    const driver = new ZfsDriver({ dataset: `${pool.name}/src`, runner });
    await driver.createDisk({ path, sizeBytes: 24 * MiB });
    const image = await driver.imagePathOf({ path });
    await must(['dd', 'if=/dev/urandom', `of=${image}`, 'bs=1M', 'count=6', 'seek=2', 'conv=notrunc,fsync', 'status=none']);

    const def = await s.req('POST', '/api/vm/db01/define/backup/hourly', { body: { type: 1, node: 'backup1', zpool: 'zbkp', schedule: '0 * * * *', retention: 4 } });
    expect(def.status, def.text).toBe(201);
    const names: string[] = [];
    const sums: string[] = [];
    for (const round of [0, 1]) {
      if (round === 1) await must(['dd', 'if=/dev/urandom', `of=${image}`, 'bs=1M', 'count=1', 'seek=12', 'conv=notrunc,fsync', 'status=none']);
      sums.push(await sha256(image));
      const c = await s.stream('POST', '/api/vm/db01/backup/hourly', { body: {} });
      expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
      expect(JSON.stringify(c.final)).toContain(round === 0 ? 'full=true' : 'full=false');
      const list = await s.req('GET', '/api/vm/db01/backup', { query: { full: 'true' } });
      const b = (list.body.result as Array<{ name: string; status: number }>).find((x) => !names.includes(x.name))!;
      expect(b.status).toBe(1);
      names.push(b.name);
      // Type 1 records the SHA-256 of the send stream it received (docs/backups.md); the image is not read back.
      const row = await db.selectFrom('backup').select('checksum').where('name', '=', b.name).executeTakeFirstOrThrow();
      expect(row.checksum).toMatch(/^stream:[0-9a-f]{64}$/);
      // Backup names have a resolution of one second.
      await new Promise((res) => setTimeout(res, 1100));
    }

    // The incremental backup restored over SSH into a zfs disk of another VM on compute1: a native stream
    // into the forced command's `receive dataset`, which replaces the disk's dataset; the snapshot that
    // disk had goes with it, from storage and from the database.
    const other = await cluster.vm('compute1', 'db03', 24);
    const otherPath = await cluster.moveDisk(other, 'compute1', 'ztank');
    await driver.createDisk({ path: otherPath, sizeBytes: 24 * MiB });
    const snap = await s.stream('POST', '/api/vm/db03/snapshot/mine', { body: { disk_id: 1 } });
    expect(snap.finalStatus, JSON.stringify(snap.final)).toBe(200);
    const native = await s.stream('PUT', `/api/vm/db01/backup/${names[1]!}`, { body: { target_hostname_or_uuid: 'db03', target_disk_id: 1 } });
    expect(native.finalStatus, JSON.stringify(native.final)).toBe(200);
    expect(JSON.stringify(native.final)).toMatch(/replaced by the received dataset/);
    expect(await sha256(await driver.imagePathOf({ path: otherPath }))).toBe(sums[1]);
    const left = await runner.run(['zfs', 'list', '-H', '-r', '-t', 'snapshot', '-o', 'name', `${pool.name}/src/${otherPath}`]);
    expect([left.code, left.stdout.trim()]).toEqual([0, '']);
    expect((await s.req('GET', '/api/vm/db03/snapshot/', {})).body.result).toEqual([]);

    // The source dataset is destroyed; the first (full) and the incremental backup restore on backup1.
    await destroyDataset(`${pool.name}/src`);
    expect((await runner.run(['zfs', 'list', `${pool.name}/src`])).code).not.toBe(0);
    for (const [i, name] of names.entries()) {
      const r = await s.stream('PUT', `/api/vm/db01/backup/${name}`, { body: { target_hostname_or_uuid: 'db02', target_disk_id: 1 } });
      expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
      expect(await sha256(target.diskPaths[0]!)).toBe(sums[i]);
    }
  }, 600_000);
});
