/** Synchronous path checks of the qcow2 driver (realpath(3) and stat on cached entries are cheaper than thread-pool round trips). */
import type { Stats } from 'node:fs';
import { realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { code, fail } from '../fs-root.js';

export function realpathOrFail(path: string, what: string): string {
  try {
    return realpathSync.native(path);
  } catch (err) {
    fail(err, what);
  }
}

/** realpath of the deepest part of `path` that exists; the missing rest is plain validated names. */
export function realpathOfExisting(path: string): string {
  for (let p = path; ; p = dirname(p)) {
    try {
      return realpathSync.native(p);
    } catch (err) {
      const c = code(err);
      if ((c !== 'ENOENT' && c !== 'ENOTDIR') || dirname(p) === p) fail(err, `cannot resolve ${path}`);
    }
  }
}

export function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return null;
    fail(err, `cannot stat ${path}`);
  }
}
