/**
 * Backups in a cluster under faults, with real engines (backup-cluster.ts: PostgreSQL, compute1
 * behind a private sshd, backup1 as a real `esnap agent` process):
 *
 * - backup1's agent gets SIGKILL while it pulls a type 2 backup over SSH into restic: the transfer
 *   dies with it (no process of either side streams on, before any restart), the task is FAILURE
 *   once the restarted agent has reported it interrupted, nothing half-made is listed or left (no
 *   backup row, no restic snapshot, no source snapshot), and the next backup succeeds;
 * - a type 2 backup of a btrfs disk over SSH, restored on backup1: the same bytes;
 * - backup1's agent (the sender) gets SIGKILL in the middle of a restore over SSH into compute1's
 *   receive: the target disk keeps its old bytes, nothing is left aside (no temporary image, no
 *   journal entry, no announcement once the repair has run), the backup is OK again and the VM
 *   stopped; a restore afterwards writes the backup's bytes.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BtrfsDriver } from '../../src/storage/btrfs/btrfs.driver.js';
import { TEMP_RE } from '../../src/storage/file/file.switch.js';
import { waitFor, waitTask } from '../cluster/cluster.helpers.js';
import { useTempDirs } from '../helpers/temp-dirs.js';
import { loopFsUnavailable, makeLoopFs, type LoopFs } from '../platform/loopfs.js';
import { platformUnavailable, requirePlatform } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';
import { sshdUnavailable } from '../platform/sshd.js';
import { MiB, processesNaming, runner, sha256, startBackupCluster, type BackupCluster } from './backup-cluster.js';

/** Fills a disk image with incompressible bytes that restic cannot deduplicate. */
async function fill(path: string, mb: number): Promise<void> {
  const fh = await open(path, 'r+');
  const chunk = randomBytes(MiB);
  try {
    for (let i = 0; i < mb; i++) await fh.write(chunk.map((b) => b ^ i), 0, MiB, i * MiB);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

describe('backups in a cluster under faults (backup node killed mid-transfer, btrfs over SSH)', async () => {
  const reason = (await sshdUnavailable()) ?? (await resticUnavailable());
  if (reason !== null) return platformUnavailable('cluster backup faults over SSH', reason);

  const tempDir = useTempDirs();
  let c: BackupCluster;
  let root: string;
  const btrfsReason = await loopFsUnavailable('btrfs');
  let btrfs: LoopFs | null = null;
  // Enough for the kills to land mid-transfer; more only makes restic's prune (the cleanup) longer.
  const DISK_MB = 160;

  beforeAll(async () => {
    root = await tempDir('esnap-bkp-faults-');
    if (btrfsReason === null) btrfs = await makeLoopFs('btrfs', 400);
    c = await startBackupCluster(root, {
      backupAsProcess: true,
      compute: btrfs ? [{ name: 'bt', driver: 'btrfs', root: join(btrfs.mountpoint, 'src') }] : [],
    });
  }, 180_000);
  afterAll(async () => {
    await c?.stop();
    await btrfs?.cleanup();
  });

  const db = () => c.server.runtime.ctx.db;
  const openTasks = async (): Promise<number> => (await db().selectFrom('task').select('id').where('state', 'in', ['PENDING', 'STARTED']).execute()).length;
  /** Kills backup1's agent and waits until nothing of this cluster streams any more (before any restart). */
  const killBackupAgent = async (): Promise<void> => {
    const p = c.backupProcess()!;
    await p.stop('SIGKILL');
    let left: string[] = [];
    await waitFor('the transfer to die with the agent', async () => (left = await processesNaming(c.root)).length === 0, 120_000, 200).catch(() => {
      throw new Error(`still running after the agent's SIGKILL:\n${left.join('\n')}`);
    });
  };
  const resticSnapshots = (): unknown[] => {
    const out = execFileSync('restic', ['snapshots', '--json', '--no-lock'], {
      env: { ...process.env, RESTIC_REPOSITORY: join(c.resticRoot, '.esnap-restic'), RESTIC_PASSWORD_FILE: join(c.backupKeys, 'backup.restic-password') },
    }).toString();
    return JSON.parse(out || '[]') as unknown[];
  };

  let backupName = '';
  let backupSha = '';

  it('backup node killed mid-backup: the transfer dies with it, the task fails after the restart, nothing half-made stays, the next backup succeeds', async () => {
    const s = c.server;
    const vm = await c.vm('compute1', 'big01', DISK_MB);
    await fill(vm.diskPaths[0]!, DISK_MB);
    const def = await s.req('POST', '/api/vm/big01/define/backup/nightly', { body: { type: 2, node: 'backup1', zpool: 'backup', schedule: '0 2 * * *', retention: 3 } });
    expect(def.status, def.text).toBe(201);
    const created = await s.req('POST', '/api/vm/big01/backup/nightly', { body: {} });
    expect(created.status, created.text).toBe(201);
    const taskId = created.body.task_id as string;
    // Mid-transfer: restic has begun storing packs of the stream it reads over SSH.
    await waitFor('restic storing data', async () => {
      const st = await s.req('GET', `/api/task/${taskId}/status`);
      if (st.status !== 201) throw new Error(`task ended before the kill: ${st.text}`);
      const packs = await readdir(join(c.resticRoot, '.esnap-restic', 'data'), { recursive: true, withFileTypes: true }).catch(() => []);
      return packs.some((e) => e.isFile());
    }, 120_000, 10);
    const bkp = await db().selectFrom('backup').select(['id', 'status']).executeTakeFirstOrThrow();
    await killBackupAgent();
    expect((await c.server.runtime.ctx.tasks.get(taskId))!.state).toBe('STARTED');
    expect((await db().selectFrom('backup').select('status').where('id', '=', bkp.id).executeTakeFirstOrThrow()).status).toBe(2);

    await c.restartBackup();
    const st = await waitTask(s, taskId, 180_000);
    expect(st.status).toBe(400);
    expect(st.body.result.message).toBe('Task was interrupted (the agent stopped while it ran)');
    // Bounds, not timings: the cleanup's `forget --prune` of the cut data took minutes at load 15-20.
    await waitFor('the cleanup task', async () => (await openTasks()) === 0, 480_000, 200);
    const cleanup = await db().selectFrom('task').select(['state', 'result']).where('kind', '=', 'backup_cleanup').execute();
    expect(cleanup.map((t) => t.state), JSON.stringify(cleanup)).toEqual(['SUCCESS']);
    expect((await s.req('GET', '/api/vm/big01/backup')).body.result).toEqual([]);
    expect(await db().selectFrom('backup').selectAll().execute()).toEqual([]);
    // The source snapshot the backup read is gone from compute1; restic holds nothing of the cut backup.
    const path = (await db().selectFrom('vm_disk').select('path').where('vm_uuid', '=', vm.uuid).executeTakeFirstOrThrow()).path;
    expect(await readdir(join(c.root, 'compute-storage', '.snapshots', path)).catch(() => [])).toEqual([]);
    expect(resticSnapshots()).toEqual([]);

    const again = await s.stream('POST', '/api/vm/big01/backup/nightly', { body: {} });
    expect(again.finalStatus, JSON.stringify(again.final)).toBe(200);
    const list = (await s.req('GET', '/api/vm/big01/backup', { query: { full: 'true' } })).body.result as Array<{ name: string; status: number }>;
    expect(list.map((b) => b.status)).toEqual([1]);
    backupName = list[0]!.name;
    backupSha = await sha256(vm.diskPaths[0]!);
    expect((await db().selectFrom('backup').select('checksum').executeTakeFirstOrThrow()).checksum).toBe(backupSha);
    expect(resticSnapshots()).toHaveLength(1);
  }, 900_000);

  it('type 2 from a btrfs disk over SSH, restored on the backup node: the same bytes', async (ctx) => {
    if (!btrfs) return requirePlatform(`type 2 from btrfs: ${btrfsReason}`) ? undefined : ctx.skip();
    const s = c.server;
    const vm = await c.vm('compute1', 'bt01', 24);
    const target = await c.vm('backup1', 'bt02', 24);
    const path = await c.moveDisk(vm, 'compute1', 'bt');
    const driver = new BtrfsDriver({ root: join(btrfs.mountpoint, 'src'), runner });
    await driver.createDisk({ path, sizeBytes: 24 * MiB });
    const image = join(btrfs.mountpoint, 'src', path, 'disk.img');
    await fill(image, 24);
    const original = await sha256(image);
    const def = await s.req('POST', '/api/vm/bt01/define/backup/daily', { body: { type: 2, node: 'backup1', zpool: 'backup', schedule: '0 3 * * *', retention: 2 } });
    expect(def.status, def.text).toBe(201);
    const b = await s.stream('POST', '/api/vm/bt01/backup/daily', { body: {} });
    expect(b.finalStatus, JSON.stringify(b.final)).toBe(200);
    const list = (await s.req('GET', '/api/vm/bt01/backup', { query: { full: 'true' } })).body.result as Array<{ name: string; status: number; node: string; size: number }>;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ status: 1, node: 'backup1', size: 24 * MiB });
    expect((await db().selectFrom('backup').select('checksum').where('name', '=', list[0]!.name).executeTakeFirstOrThrow()).checksum).toBe(original);
    // The source snapshot (a read-only subvolume) is gone again.
    expect(await readdir(join(btrfs.mountpoint, 'src', '.snapshots', path)).catch(() => [])).toEqual([]);
    // The source changes afterwards; the restore on backup1 gives the bytes of the backup.
    await fill(image, 2);
    const r = await s.stream('PUT', `/api/vm/bt01/backup/${list[0]!.name}`, { body: { target_hostname_or_uuid: 'bt02', target_disk_id: 1 } });
    expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
    expect(await sha256(target.diskPaths[0]!)).toBe(original);
  }, 600_000);

  it('sender killed mid-restore: the target disk keeps its old bytes, nothing is left aside after the repair, a restore afterwards succeeds', async () => {
    // The first test made the backup; without it this one fails rather than skips.
    if (!backupName) throw new Error('no backup to restore: the first test of this file did not make one');
    const s = c.server;
    const target = await c.vm('compute1', 'tgt01', DISK_MB);
    await fill(target.diskPaths[0]!, DISK_MB);
    const old = await sha256(target.diskPaths[0]!);
    const folder = join(c.root, 'compute-storage');
    const aside = async (): Promise<string[]> => (await readdir(folder)).filter((n) => TEMP_RE.test(n));
    const journal = async (): Promise<string[]> => await readdir(join(folder, '.esnap-journal')).catch(() => []);
    const announced = async (): Promise<string[]> => await readdir(join(c.root, 'compute-ssh', 'announced')).catch(() => []);
    expect(await aside()).toEqual([]);

    const r = await s.req('PUT', `/api/vm/big01/backup/${backupName}`, { body: { target_hostname_or_uuid: 'tgt01', target_disk_id: 1 } });
    expect(r.status, r.text).toBe(201);
    const taskId = r.body.task_id as string;
    // Mid-restore: compute1's receive has written part of the image aside.
    await waitFor('the receive writing aside', async () => {
      const st = await s.req('GET', `/api/task/${taskId}/status`);
      if (st.status !== 201) throw new Error(`restore ended before the kill: ${st.text}`);
      for (const n of await aside()) if (((await stat(join(folder, n)).catch(() => null))?.size ?? 0) >= 8 * MiB) return true;
      return false;
    }, 120_000, 10);
    await killBackupAgent();
    // compute1's receive saw the stream end without the commit line: old bytes, nothing aside.
    expect(await aside()).toEqual([]);
    expect(await journal()).toEqual([]);
    expect(await sha256(target.diskPaths[0]!)).toBe(old);
    expect((await c.server.runtime.ctx.tasks.get(taskId))!.state).toBe('STARTED');

    await c.restartBackup();
    const st = await waitTask(s, taskId, 180_000);
    expect(st.status).toBe(400);
    await waitFor('no task open', async () => (await openTasks()) === 0, 300_000, 200);
    // The repair gave the backup and the VM their statuses back and withdrew the announcement.
    const bkp = (await s.req('GET', `/api/vm/big01/backup/${backupName}`)).body.result as { status: number };
    expect(bkp.status).toBe(1);
    expect((await db().selectFrom('vm').select('status').where('uuid', '=', target.uuid).executeTakeFirstOrThrow()).status).toBe(1);
    await waitFor('the announcement withdrawn', async () => (await announced()).length === 0, 30_000, 100);
    expect(await aside()).toEqual([]);
    expect(await sha256(target.diskPaths[0]!)).toBe(old);

    // Restore again, now to its end.
    const again = await s.stream('PUT', `/api/vm/big01/backup/${backupName}`, { body: { target_hostname_or_uuid: 'tgt01', target_disk_id: 1 } });
    expect(again.finalStatus, JSON.stringify(again.final)).toBe(200);
    expect(await sha256(target.diskPaths[0]!)).toBe(backupSha);
    expect(await aside()).toEqual([]);
  }, 900_000);
});
