/**
 * Rollback and restore of the `file` driver, crash-safe: the disk holds either its old content or
 * the snapshot's, never a mix or a truncation, whenever the agent is killed.
 *
 * 1. A journal entry naming the temporary is made durable (storage/journal.ts).
 * 2. The snapshot is copied ASIDE into `.<name>.tmp-<hex>` next to the image (same folder, so the
 *    same filesystem): a reflink clone where the filesystem can (instant on XFS and btrfs), else a
 *    sparse copy by `cp`; then it gets the image's mode and owner and is fsynced.
 * 3. rename(2) replaces the image with it, atomically; the folder is fsynced (the commit point).
 * 4. The journal entry goes.
 * A crash before 3 leaves the old image and a temporary that init() removes (recoverSwitches);
 * after 3 the image is the snapshot's content. A failure (no space for the copy) leaves the old
 * image untouched, unlike the in-place rewrite this replaces, which truncated it first.
 *
 * The switch gives the image a new inode: a process holding the old one open (a running VM) would
 * keep writing into the old content. Rollback and restore are only done on a stopped VM (the agent
 * checks QMP and QEMU's image lock first), so nothing holds it. Hard links to the image and
 * extended attributes other than the owner and mode are not carried over.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { StorageError } from '../driver.js';
import { code, fail } from '../fs-root.js';
import { fsyncPath, type Journal } from '../journal.js';

/** `.<name>.tmp-<hex>`: the leading dot keeps temporaries out of list() and away from valid ids. */
export const TEMP_RE = /^\..+\.tmp-[0-9a-f]{12}$/;

export function tempName(base: string): string {
  return `.${base}.tmp-${randomBytes(6).toString('hex')}`;
}

export interface SwitchOptions {
  readonly root: string;
  readonly journal: Journal;
  /** The image to replace (must exist). */
  readonly image: string;
  /** The file whose content the image gets. */
  readonly source: string;
  /** Clone or copy `src` into the new file `dst` (the driver's reflink-or-cp). */
  readonly copy: (src: string, dst: string) => Promise<void>;
}

export async function switchInCopy(o: SwitchOptions): Promise<void> {
  const sw = await openSwitch(o);
  try {
    await o.copy(o.source, sw.temp);
  } catch (err) {
    await sw.abort();
    fail(err, `cannot switch ${o.image} to ${o.source}`);
  }
  await sw.commit(`cannot switch ${o.image} to ${o.source}`);
}

/** A switch in progress: `temp` is to be filled by the caller, then committed or aborted. */
export interface OpenSwitch {
  readonly temp: string;
  /** Gives the temporary the image's mode and owner, fsyncs it and renames it over the image. */
  commit(what: string): Promise<void>;
  /** Removes the temporary and the journal entry; the image stays as it was. */
  abort(): Promise<void>;
}

/**
 * Steps 1 and 3–4 of a switch with the filling of the temporary left to the caller (a restore
 * from a backup stream writes it): the journal entry is durable before the temporary exists.
 */
export async function openSwitch(o: Pick<SwitchOptions, 'root' | 'journal' | 'image'>): Promise<OpenSwitch> {
  const before = await stat(o.image).catch((err: unknown) => fail(err, `cannot stat ${o.image}`));
  const temp = join(dirname(o.image), tempName(basename(o.image)));
  const id = await o.journal
    .begin({ op: 'file-switch', temp: relative(o.root, temp) })
    .catch((err: unknown) => fail(err, 'cannot write the storage journal'));
  const abort = async (): Promise<void> => {
    await unlink(temp).catch(() => undefined);
    await o.journal.end(id).catch(() => undefined);
  };
  return {
    temp,
    abort,
    async commit(what: string): Promise<void> {
      try {
        await chmod(temp, before.mode & 0o7777);
        await chown(temp, before.uid, before.gid).catch((err: unknown) => {
          if (code(err) !== 'EPERM') throw err; // not root: the file is ours already
        });
        await fsyncPath(temp);
        await rename(temp, o.image);
      } catch (err) {
        await unlink(temp).catch(() => undefined);
        fail(err, what);
      }
      // Switched: a failed folder fsync only matters to a machine crash, and must not report the
      // rollback failed while the image already holds the snapshot's content.
      await fsyncPath(dirname(o.image)).catch((err: unknown) => process.emitWarning(`esnap: cannot flush ${dirname(o.image)}: ${String(err)}`));
      await o.journal.end(id).catch(() => undefined); // a stale entry only makes init() look for a temporary
    },
  };
}

/** init(): removes the temporaries of switches a crash cut off (their images are the old ones). */
export async function recoverSwitches(root: string, journal: Journal): Promise<void> {
  for (const { id, entry } of await journal.pending()) {
    const rel = entry?.['op'] === 'file-switch' ? entry['temp'] : undefined;
    if (typeof rel === 'string') {
      const temp = resolve(root, rel);
      // Only a temporary name under the root is ever removed, whatever the entry says.
      if (!temp.startsWith(resolve(root) + sep) || !TEMP_RE.test(basename(temp))) {
        throw new StorageError('backend', `storage journal entry ${id} names ${JSON.stringify(rel)}, not a temporary`);
      }
      await unlink(temp).catch((err: unknown) => {
        if (code(err) !== 'ENOENT' && code(err) !== 'ENOTDIR') throw err;
      });
    }
    await journal.end(id);
  }
}
