/**
 * File-system side shared by the drivers that keep disk images under a root folder (file, qcow2,
 * btrfs): the errno code of a failure, its one translation into StorageError, and the root's usage.
 * btrfs adds a quota check of its own on top of fail() (btrfs.fs.ts).
 */
import { rmdir, statfs } from 'node:fs/promises';
import { dirname, sep } from 'node:path';
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

/**
 * errno codes of a disk image that cannot be made at its path because the path, or a folder on
 * it, is taken: a file where a folder must be (`<uuid>-disk0/x` under another disk's image), or a
 * folder where the image must be.
 */
const PATH_TAKEN = new Set(['EEXIST', 'ENOTDIR', 'EISDIR']);

/** Whether `err` says the image path (or a folder on it) is taken; see diskPathTaken. */
export function isPathTaken(err: unknown): boolean {
  return PATH_TAKEN.has(code(err) ?? '');
}

/**
 * The one answer for a disk path that is taken, whatever takes it: it names neither what is there
 * nor where, since the storage (and so the path) may hold the disks of other DCs.
 */
export function diskPathTaken(path: string, cause?: unknown): StorageError {
  return new StorageError('invalid_name', `Disk path ${path} is not available: it, or a folder on it, is already taken`, cause === undefined ? undefined : { cause });
}

/**
 * Removes the folders above `path` that are empty, nearest first, up to but not including `stop`
 * (the storage root, or its snapshot folder): a deleted disk `nestdir/a/b/img` leaves no
 * `nestdir/a/b`. Stops at the first folder still in use (not empty, or a mount point). A create
 * of another disk below one of these folders can find it gone between its mkdir and its open;
 * the drivers' createDisk retries that once.
 */
export async function removeEmptyParents(path: string, stop: string): Promise<void> {
  for (let dir = dirname(path); dir.startsWith(stop + sep); dir = dirname(dir)) {
    try {
      await rmdir(dir);
    } catch (err) {
      if (code(err) === 'ENOENT') continue;
      if (['ENOTEMPTY', 'EEXIST', 'EBUSY'].includes(code(err) ?? '')) return;
      fail(err, `cannot remove the empty folder ${dir}`);
    }
  }
}
