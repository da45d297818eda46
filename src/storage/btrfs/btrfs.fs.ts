/**
 * File-system side of the btrfs driver: side-cars of the old layout (`<id>.json` beside snapshot
 * `<id>`, read back until init() converts them), subvolume detection without a process, and the
 * errno translation of fs-root.ts with btrfs's quota EDQUOT added (btrfs's own stderr is translated
 * in btrfs.errors.ts).
 */
import { lstatSync, readFileSync, type Stats } from 'node:fs';
import { lstat, readdir, unlink } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { StorageError, type SnapshotInfo } from '../driver.js';
import { code, fail as failFs } from '../fs-root.js';

/** BTRFS_FIRST_FREE_OBJECTID: the inode number of every subvolume's top folder, and of nothing else on btrfs. */
const SUBVOLUME_INO = 256;
export const SIDECAR_EXT = '.json';
/** `.<name>.tmp-<hex>`: a side-car (old layout) or an index compaction being written; the dot keeps it out of list(). */
export const SIDECAR_TMP_RE = /^\..+\.tmp-[0-9a-f]{12}$/;

export function isSubvolume(st: Stats | null): st is Stats {
  return st !== null && st.isDirectory() && st.ino === SUBVOLUME_INO;
}

export async function filterAsync<T>(items: readonly T[], keep: (item: T) => Promise<boolean>): Promise<T[]> {
  const flags = await Promise.all(items.map(keep));
  return items.filter((_, i) => flags[i]);
}

export async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return null;
    fail(err, `cannot stat ${path}`);
  }
}

/** lstat without a thread-pool round trip, for the many small reads of list() and destroy(). */
export function lstatSyncOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return null;
    fail(err, `cannot stat ${path}`);
  }
}

export async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return [];
    throw err;
  }
}

export async function unlinkQuiet(path: string): Promise<void> {
  await unlink(path).catch((err: unknown) => {
    if (code(err) !== 'ENOENT') throw err;
  });
}

/** The shared translation of errno failures into StorageError (fs-root.ts), plus btrfs quota groups' EDQUOT. */
export function fail(err: unknown, what: string): never {
  // libuv 1.46 (Node 20) has no name for EDQUOT: it arrives as "Unknown system error -122".
  const quota = typeof err === 'object' && err !== null && 'errno' in err && err.errno === -osConstants.errno.EDQUOT;
  if (quota && !(err instanceof StorageError)) {
    const message = err instanceof Error ? err.message : String(err);
    throw new StorageError('no_space', `${what}: ${message}`, { cause: err });
  }
  return failFs(err, what);
}

/**
 * One snapshot's entry, read with SYNCHRONOUS calls: an lstat and a tiny side-car per snapshot
 * cost a thread-pool round trip each in the async forms, which made list() of 1,000 snapshots
 * 40-60 ms here instead of about 12; list() reads in chunks and yields between them, so the
 * event loop is never held for more than about a millisecond.
 */
export function readSnapshotSync(snapDir: string, id: string, hasSidecar: boolean): SnapshotInfo | null {
  const st = lstatSyncOrNull(join(snapDir, id));
  if (!isSubvolume(st)) return null; // not a snapshot, or destroyed while we listed
  const side = hasSidecar ? readSidecarSync(join(snapDir, id + SIDECAR_EXT)) : { name: null, created: null };
  // No side-car (a snapshot made by hand): btrfs's own creation time (statx btime = otime).
  const created = side.created ?? (st.birthtimeMs > 0 ? st.birthtime : st.mtime);
  return { id, created, size: null, name: side.name };
}

/** A missing or unreadable side-car (old layout) is not an error: the snapshot is listed without a name. */
export function readSidecarSync(path: string): { name: string | null; created: Date | null } {
  try {
    const data: unknown = JSON.parse(readFileSync(path, 'utf8'));
    const { name, created } = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
    const date = typeof created === 'string' ? new Date(created) : null;
    return { name: typeof name === 'string' ? name : null, created: date && !Number.isNaN(date.getTime()) ? date : null };
  } catch {
    return { name: null, created: null };
  }
}
