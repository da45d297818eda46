/**
 * Native replication streams of backup type 1 (dataset): `zfs send`/`zfs recv` and
 * `btrfs send`/`btrfs receive`, as argument arrays built from a storage's configuration and the
 * drivers' layouts (zfs: a disk is the dataset `<dataset>/<disk>` and its snapshot
 * `<dataset>/<disk>@<id>`; btrfs: snapshot `<id>` of a disk is the read-only subvolume
 * `<root>/.snapshots/<disk>/<id>`). Which storages can send natively, and into which backup
 * storages, is the one table below: the same driver on both ends.
 *
 * On the backup storage a chain of backups of one disk lives at `<chain>` (a path relative to the
 * backup storage): the zfs dataset `<dataset>/<chain>` whose snapshots are the backups, or the
 * btrfs folder `<root>/<chain>/` holding one read-only subvolume per backup. A full stream starts a
 * new chain; an incremental one lands in the chain that holds its base.
 */
import { dirname, join } from 'node:path';
import { lstat, mkdir } from 'node:fs/promises';
import { assertDiskPath, StorageError } from '../storage/driver.js';
import type { StorageConfig } from '../storage/drivers.js';
import type { CommandRunner } from '../storage/runner.js';
import { SERVE_SNAPSHOT_RE } from './serve-request.js';

export type NativeKind = 'zfs' | 'btrfs';

/** Drivers whose disks can be sent natively (type 1), and into a backup storage of the same driver. */
const NATIVE: Readonly<Record<string, NativeKind>> = { zfs: 'zfs', btrfs: 'btrfs' };

export function nativeKind(driver: string): NativeKind | null {
  return Object.hasOwn(NATIVE, driver) ? NATIVE[driver]! : null;
}

/** Whether a type 1 backup of a disk on `source` can go to a backup storage of driver `target`. */
export function datasetBackupSupported(source: string, target: string): boolean {
  const kind = nativeKind(source);
  return kind !== null && kind === nativeKind(target);
}

/**
 * Drivers whose disks a dataset backup of the same driver replaces by a native full stream
 * (ZfsDriver.receiveDisk, BtrfsDriver.receiveDisk), and whether that takes the disk's snapshots
 * along: a zfs disk's snapshots live in its dataset and go with it; a btrfs disk's are subvolumes
 * of their own and stay.
 */
const DATASET_RESTORE: Readonly<Record<NativeKind, { readonly dropsSnapshots: boolean }>> = { zfs: { dropsSnapshots: true }, btrfs: { dropsSnapshots: false } };

/** Whether the native restore into a disk of driver `target` destroys that disk's snapshots. */
export function datasetRestoreDropsSnapshots(target: string): boolean {
  const kind = nativeKind(target);
  return kind !== null && DATASET_RESTORE[kind].dropsSnapshots;
}

/** Whether a dataset backup on a storage of driver `backup` restores natively into a disk on `target`. */
export function datasetRestoreSupported(backup: string, target: string): boolean {
  const kind = nativeKind(backup);
  return kind !== null && kind === nativeKind(target) && Object.hasOwn(DATASET_RESTORE, kind);
}

/** btrfs: the snapshot folder of the driver's layout (src/storage/btrfs/btrfs.driver.ts). */
const BTRFS_SNAPSHOT_DIR = '.snapshots';

function requireField(cfg: StorageConfig, field: 'root' | 'dataset'): string {
  const v = cfg[field];
  if (typeof v !== 'string' || v === '') throw new StorageError('backend', `Storage ${cfg.name} has no ${field}`);
  return v;
}

function checkId(id: string): void {
  if (!SERVE_SNAPSHOT_RE.test(id)) throw new StorageError('invalid_name', `Invalid snapshot id: ${JSON.stringify(id)}`);
}

/** Where snapshot `id` of `disk` is: `pool/ds/disk@id` or the btrfs subvolume's path. */
export function nativeSnapshot(cfg: StorageConfig, disk: string, id: string): string {
  assertDiskPath(disk);
  checkId(id);
  if (nativeKind(cfg.driver) === 'zfs') return `${requireField(cfg, 'dataset')}/${disk}@${id}`;
  if (nativeKind(cfg.driver) === 'btrfs') return join(requireField(cfg, 'root'), BTRFS_SNAPSHOT_DIR, disk, id);
  throw new StorageError('backend', `Storage ${cfg.name} (${cfg.driver}) cannot send natively`);
}

/** `zfs send [-i <base>] <snap>` / `btrfs send -q [-p <base>] <snap>`. */
export function sendArgv(cfg: StorageConfig, disk: string, id: string, base: string | null): string[] {
  const snap = nativeSnapshot(cfg, disk, id);
  const parent = base === null ? null : nativeSnapshot(cfg, disk, base);
  if (nativeKind(cfg.driver) === 'zfs') return ['zfs', 'send', ...(parent ? ['-i', parent] : []), snap];
  return ['btrfs', 'send', '-q', ...(parent ? ['-p', parent] : []), snap];
}

/** Whether snapshot `id` of `disk` exists (zfs: listed; btrfs: the subvolume's folder is there). */
export async function nativeSnapshotExists(runner: CommandRunner, cfg: StorageConfig, disk: string, id: string): Promise<boolean> {
  const snap = nativeSnapshot(cfg, disk, id);
  if (nativeKind(cfg.driver) === 'zfs') {
    const r = await runner.run(['zfs', 'list', '-H', '-o', 'name', snap], { timeoutMs: 60_000 });
    if (r.code === 0) return true;
    if (/does not exist/.test(r.stderr)) return false;
    throw new StorageError('backend', `zfs list ${snap}: ${r.stderr.trim()}`);
  }
  return lstat(snap).then(
    (st) => st.isDirectory(),
    () => false,
  );
}

/** The chain on a backup storage: the zfs dataset, or the btrfs folder that holds the received subvolumes. */
export function chainLocation(cfg: StorageConfig, chain: string): string {
  assertDiskPath(chain);
  if (nativeKind(cfg.driver) === 'zfs') return `${requireField(cfg, 'dataset')}/${chain}`;
  if (nativeKind(cfg.driver) === 'btrfs') return join(requireField(cfg, 'root'), chain);
  throw new StorageError('backend', `Storage ${cfg.name} (${cfg.driver}) cannot receive natively`);
}

/** A backup inside its chain: `dataset@is-<n>` (zfs) or the received subvolume's path (btrfs). */
export function chainSnapshot(cfg: StorageConfig, chain: string, id: string): string {
  checkId(id);
  const at = chainLocation(cfg, chain);
  return nativeKind(cfg.driver) === 'zfs' ? `${at}@${id}` : join(at, id);
}

/**
 * `zfs recv -F <dataset>/<chain>` / `btrfs receive <root>/<chain>`. zfs: -F rolls the chain back to
 * its newest snapshot first (a mounted dataset may have been touched: atime); the base of an
 * incremental is always that newest snapshot, so no backup is lost by it.
 */
export function receiveArgv(cfg: StorageConfig, chain: string): string[] {
  const at = chainLocation(cfg, chain);
  if (nativeKind(cfg.driver) === 'zfs') return ['zfs', 'recv', '-F', at];
  return ['btrfs', 'receive', at];
}

/**
 * Takes (`snapshot`, idempotent: an existing one is kept) or destroys (`release`, a missing one is
 * fine) a backup's `is-<n>` snapshot of a disk with zfs's or btrfs's own commands, not the driver:
 * its init() repairs interrupted operations, which only the agent may do.
 */
export async function nativeBaseSnapshot(runner: CommandRunner, cfg: StorageConfig, disk: string, id: string, op: 'snapshot' | 'release'): Promise<void> {
  const kind = nativeKind(cfg.driver);
  const exists = await nativeSnapshotExists(runner, cfg, disk, id);
  if ((op === 'snapshot') === exists) return;
  const snap = nativeSnapshot(cfg, disk, id);
  let argv: string[];
  if (kind === 'zfs') argv = op === 'snapshot' ? ['zfs', 'snapshot', snap] : ['zfs', 'destroy', snap];
  else if (op === 'release') argv = ['btrfs', 'subvolume', 'delete', '--commit-after', snap];
  else {
    await mkdir(dirname(snap), { recursive: true });
    argv = ['btrfs', 'subvolume', 'snapshot', '-r', join(requireField(cfg, 'root'), disk), snap];
  }
  const r = await runner.run(argv, { timeoutMs: 5 * 60_000 });
  if (r.code !== 0) throw new StorageError('backend', `${argv.slice(0, 3).join(' ')} ${snap} failed: ${r.stderr.trim()}`);
}
