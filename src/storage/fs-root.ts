/**
 * File-system side shared by the drivers that keep disk images under a root folder (file, qcow2,
 * btrfs): the errno code of a failure, its one translation into StorageError, and the root's usage.
 * btrfs adds a quota check of its own on top of fail() (btrfs.fs.ts).
 */
import { statfs } from 'node:fs/promises';
import { StorageError, type StorageStats } from './driver.js';

/** The errno name (`ENOENT`, …) of a Node failure, or undefined for anything else. */
export function code(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

/**
 * The one translation of errno failures (and runner failures: timeouts, spawn errors) into
 * StorageError; a StorageError passes through as is.
 * Example: `await mkdir(dir).catch((err: unknown) => fail(err, 'cannot create the storage folders'))`
 */
export function fail(err: unknown, what: string): never {
  if (err instanceof StorageError) throw err;
  const c = code(err);
  const message = err instanceof Error ? err.message : String(err);
  if (c === 'ENOSPC' || c === 'EDQUOT') throw new StorageError('no_space', `${what}: ${message}`, { cause: err });
  throw new StorageError('backend', `${what}: ${message}`, { cause: err });
}

/** Size and free space of the filesystem holding `root`. */
export async function rootStats(root: string): Promise<StorageStats> {
  const s = await statfs(root).catch((err: unknown) => fail(err, 'cannot read storage usage'));
  // bavail, not bfree: the root-reserved blocks are not ours to promise to snapshots.
  return { size: s.blocks * s.bsize, free: s.bavail * s.bsize };
}
