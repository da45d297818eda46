/**
 * The file driver's file system steps that need no driver state: reading a snapshot and its
 * side-car, init()'s clean-up of a crashed create's leftovers, and small stat/readdir/unlink
 * helpers that turn "not there" into a value and anything else into a StorageError.
 */
import type { Dirent, Stats } from 'node:fs';
import { mkdir, open, readdir, readFile, realpath, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { SnapshotInfo } from '../driver.js';
import { code, fail } from '../fs-root.js';
import { TEMP_RE } from './file.switch.js';

export const SIDECAR_EXT = '.json';

interface Sidecar {
  readonly name: string | null;
  readonly created: Date | null;
}

export async function readSnapshot(snapDir: string, id: string): Promise<SnapshotInfo | null> {
  const st = await statOrNull(join(snapDir, id));
  if (!st) return null; // destroyed while we listed
  const side = await readSidecar(join(snapDir, id + SIDECAR_EXT));
  return { id, created: side.created ?? st.mtime, size: allocated(st), name: side.name };
}

/** A missing or unreadable side-car (a snapshot somebody copied in by hand) is not an error. */
export async function readSidecar(path: string): Promise<Sidecar> {
  try {
    const data: unknown = JSON.parse(await readFile(path, 'utf8'));
    if (typeof data !== 'object' || data === null) return { name: null, created: null };
    const { name, created } = data as Record<string, unknown>;
    const date = typeof created === 'string' ? new Date(created) : null;
    return { name: typeof name === 'string' ? name : null, created: date && !Number.isNaN(date.getTime()) ? date : null };
  } catch {
    return { name: null, created: null };
  }
}

/** init(): drop temporaries and side-cars without an image, both left by a crashed create. */
export async function removeLeftovers(dir: string): Promise<void> {
  const entries = await readdirOrEmpty(dir);
  const names = new Set(entries.map((e) => e.name));
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) await removeLeftovers(path);
    else if (TEMP_RE.test(e.name)) await unlinkQuiet(path);
    else if (e.name.endsWith(SIDECAR_EXT) && !names.has(e.name.slice(0, -SIDECAR_EXT.length))) await unlinkQuiet(path);
  }
}

export function allocated(st: Stats): number {
  return st.blocks * 512;
}

/** realpath of the deepest part of `path` that exists; the missing rest is plain validated names. */
export async function realpathOfExisting(path: string): Promise<string> {
  for (let p = path; ; p = dirname(p)) {
    try {
      return await realpath(p);
    } catch (err) {
      const c = code(err);
      if ((c !== 'ENOENT' && c !== 'ENOTDIR') || dirname(p) === p) fail(err, `cannot resolve ${path}`);
    }
  }
}

/**
 * Creates the folders of `image` and the image itself (`wx`: never an existing one). A delete of
 * another disk removing an empty folder between the two (removeEmptyParents) makes the open fail
 * with ENOENT: the folders are made again, once.
 */
export async function openNew(image: string) {
  for (let attempt = 0; ; attempt++) {
    await mkdir(dirname(image), { recursive: true });
    try {
      return await open(image, 'wx');
    } catch (err) {
      if (code(err) !== 'ENOENT' || attempt > 0) throw err;
    }
  }
}

export async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return null;
    fail(err, `cannot stat ${path}`);
  }
}

export async function readdirOrEmpty(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return [];
    fail(err, `cannot read ${dir}`);
  }
}

export async function unlinkQuiet(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (code(err) !== 'ENOENT' && code(err) !== 'ENOTDIR') throw err;
  }
}

/** Cleanup after a failure that is already being reported; whatever stays, init() removes. */
export async function cleanUp(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

