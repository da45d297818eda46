/**
 * The restore of a dataset backup into a btrfs disk (BtrfsDriver.receiveDisk): the backup's `btrfs
 * send` stream is received into a staging folder of the disk's filesystem (RECEIVE_DIR), and the
 * received subvolume itself becomes the new disk: made writable (`-f`: a received subvolume
 * refuses otherwise), moved to the swap's `.esnap-new` and swapped in by steps 2-4 of the rollback
 * swap (btrfs.swap.ts). A failure or a cut stream leaves the old disk and deletes the partial
 * subvolume; init() deletes what a crash left in the staging folder (removeReceiveLeftovers).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { StorageError } from '../driver.js';
import type { BtrfsCommands } from './btrfs.commands.js';
import { fail, filterAsync, isSubvolume, lstatOrNull, readdirOrEmpty } from './btrfs.fs.js';
import { recoverSwap, swapPrepared, type SwapPaths } from './btrfs.swap.js';
import { pointOfNoReturn } from '../op-scope.js';

/** Where a restore receives a backup's stream before swapping it in (a dot-folder: never a disk). */
export const RECEIVE_DIR = '.esnap-receive';

export interface Received {
  /** The disk's path, for messages. */
  readonly disk: string;
  /** The disk's image size, which the received image must have. */
  readonly size: number;
  /** The image's file name inside a disk subvolume. */
  readonly image: string;
  /** The snapshot id the stream carries (the received subvolume's name). */
  readonly received: string;
  /** Runs the `btrfs receive <staging>` argv it is given with the stream on its stdin. */
  feed(recv: readonly string[]): Promise<void>;
}

export async function receiveInto(cmd: BtrfsCommands, root: string, p: SwapPaths, r: Received): Promise<void> {
  const staging = join(root, RECEIVE_DIR, `${Date.now()}-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { recursive: true }).catch((err: unknown) => fail(err, 'cannot create the receive folder'));
  const sub = join(staging, r.received);
  try {
    await r.feed(['btrfs', 'receive', staging]);
    const got = await stat(join(sub, r.image)).catch((err: unknown) => fail(err, `the received backup ${r.received} holds no image`));
    if (got.size !== r.size) throw new StorageError('size_mismatch', `backup ${r.received} holds ${got.size} bytes, ${r.disk} ${r.size}`);
    // A task cancelled until here keeps the old disk; from here a cancel answers 406.
    pointOfNoReturn();
    // Step 1 without a snapshot of the received subvolume (that and its later delete cost a third of a restore).
    await recoverSwap(cmd, p);
    await cmd.btrfs(['btrfs', 'property', 'set', '-f', '-ts', sub, 'ro', 'false']);
    await rename(sub, p.newPath).catch((err: unknown) => fail(err, `cannot move the received backup to ${p.newPath}`));
    await swapPrepared(cmd, p);
  } finally {
    if (isSubvolume(await lstatOrNull(sub))) await cmd.deleteSubvolumes([sub], { commit: false }).catch(() => undefined);
    await rmdir(staging).catch(() => undefined); // init() takes what is left
  }
}

/** What a restore's receive left when a crash cut it short: its subvolumes, then its folders. */
export async function removeReceiveLeftovers(cmd: BtrfsCommands, root: string): Promise<void> {
  const dir = join(root, RECEIVE_DIR);
  for (const name of await readdirOrEmpty(dir)) {
    const staging = join(dir, name);
    const subs = await filterAsync(
      (await readdirOrEmpty(staging)).map((n) => join(staging, n)),
      async (path) => isSubvolume(await lstatOrNull(path)),
    );
    await cmd.deleteSubvolumes(subs, { commit: false });
    await rmdir(staging).catch((err: unknown) => fail(err, `cannot remove ${staging}`));
  }
}
