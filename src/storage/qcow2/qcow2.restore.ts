/**
 * qcow2 restore, crash-safe. `qemu-img convert -n` writes the snapshot into the target's active
 * layer in place (the target's own internal snapshots must stay, so it cannot be written aside and
 * renamed in); killed half way, the disk would be a mix. So the restore is bracketed by an internal
 * snapshot of the target, which costs only metadata (qcow2 clusters are copy-on-write once shared):
 *
 * 1. a journal entry `{image, tag}` is made durable (storage/journal.ts);
 * 2. `qemu-img snapshot -c esnap-restore-undo` on the target: its old content, kept;
 * 3. `qemu-img convert -n` writes the snapshot's content into the active layer;
 * 4. `qemu-img snapshot -d esnap-restore-undo` (the commit point), then the entry goes.
 * A crash before 4 leaves the undo snapshot: init() (recoverRestores) applies it (`snapshot -a`,
 * which switches the active L1 table) and deletes it, so the disk is the old one. A crash during 4
 * leaves the tag or not, qcow2 updates its snapshot table in one write. A failed convert (no
 * space) is undone the same way at once. The undo tag is no valid snapshot id and list() hides it.
 */
import { relative, resolve, sep } from 'node:path';
import { StorageError } from '../driver.js';
import { fail } from '../fs-root.js';
import type { Journal } from '../journal.js';
import type { RunResult } from '../runner.js';
import { argv, type QcowInfo } from './qcow2.image.js';

export const UNDO_TAG = 'esnap-restore-undo';

/** What the driver lends: qemu-img runs with its error translation, and the info read. */
export interface QcowTools {
  tool(args: readonly string[], what: string, timeoutMs?: number): Promise<RunResult>;
  info(image: string): Promise<QcowInfo>;
}

export interface RestoreJob {
  readonly root: string;
  readonly journal: Journal;
  readonly source: string;
  /** The source's snapshot; null: the source is a raw image file (a backup restore). */
  readonly id: string | null;
  readonly target: string;
  readonly what: string;
  readonly copyTimeoutMs: number;
}

export async function restoreWithUndo(t: QcowTools, j: RestoreJob): Promise<void> {
  if ((await t.info(j.target)).snapshots.some((s) => s.name === UNDO_TAG)) {
    // Only a failed undo leaves one, and its journal entry with it; init() did not run since.
    throw new StorageError('backend', `${j.what}: an earlier restore into it is not yet undone (restart the agent)`);
  }
  const entry = await j.journal
    .begin({ op: 'qcow2-restore', image: relative(j.root, j.target), tag: UNDO_TAG })
    .catch((err: unknown) => fail(err, `${j.what}: cannot write the storage journal`));
  await t.tool(argv.snapshotCreate(j.target, UNDO_TAG), `${j.what}: cannot keep its old content`).catch(async (err: unknown) => {
    await j.journal.end(entry).catch(() => undefined);
    throw err;
  });
  try {
    await t.tool(j.id === null ? argv.restoreRaw(j.source, j.target) : argv.restore(j.source, j.id, j.target), j.what, j.copyTimeoutMs);
  } catch (err) {
    // The old content comes back now; if that fails too, the entry stays for init().
    await undo(t, j.target);
    await j.journal.end(entry);
    throw err;
  }
  await t.tool(argv.snapshotDelete(j.target, UNDO_TAG), `${j.what}: cannot drop its old content`);
  await j.journal.end(entry);
}

async function undo(t: QcowTools, image: string): Promise<void> {
  await t.tool(argv.snapshotApply(image, UNDO_TAG), `cannot undo an interrupted restore into ${image}`);
  await t.tool(argv.snapshotDelete(image, UNDO_TAG), `cannot drop the undo snapshot of ${image}`);
}

/** init(): every restore a crash cut off is undone (the disk gets its old content back). */
export async function recoverRestores(t: QcowTools, root: string, journal: Journal): Promise<void> {
  for (const { id, entry } of await journal.pending()) {
    const rel = entry?.['op'] === 'qcow2-restore' ? entry['image'] : undefined;
    if (typeof rel === 'string') {
      const image = resolve(root, rel);
      if (!image.startsWith(resolve(root) + sep)) throw new StorageError('backend', `storage journal entry ${id} names ${JSON.stringify(rel)}`);
      const info = await t.info(image).catch((err: unknown) => {
        if (err instanceof StorageError && err.code === 'disk_missing') return null; // deleted since
        throw err;
      });
      if (info?.snapshots.some((s) => s.name === UNDO_TAG)) await undo(t, image);
    }
    await journal.end(id);
  }
}
