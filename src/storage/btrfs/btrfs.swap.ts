/**
 * Rollback and restore swap a writable snapshot in place of a disk (btrfs.driver.ts's header, steps
 * 1-4), and recovery puts the old disk back or deletes the leftovers of a swap a crash cut short.
 */
import { rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { BtrfsCommands } from './btrfs.commands.js';
import { fail, filterAsync, isSubvolume, lstatOrNull, readdirOrEmpty } from './btrfs.fs.js';

/** Leftovers of a swap; the leading dot keeps them apart from disk names (DISK_PATH_RE forbids it). */
const SWAP_RE = /^\.(.+)\.esnap-(new|old)$/;

export interface SwapPaths {
  readonly subvol: string;
  readonly newPath: string;
  readonly oldPath: string;
}

/** Steps 1-4 of btrfs.driver.ts's header; on a failure before step 3 the old disk stays (or goes back) in place. */
export async function swapIn(cmd: BtrfsCommands, p: SwapPaths, snapshot: string): Promise<void> {
  await recoverSwap(cmd, p);
  await cmd.btrfs(['btrfs', 'subvolume', 'snapshot', snapshot, p.newPath], { missing: 'snapshot_missing' });
  await swapPrepared(cmd, p);
}

/** Steps 2-4: `.esnap-new` is ready (a snapshot, or a subvolume a restore stream filled). */
export async function swapPrepared(cmd: BtrfsCommands, p: SwapPaths): Promise<void> {
  try {
    await rename(p.subvol, p.oldPath);
  } catch (err) {
    await cmd.deleteSubvolumes([p.newPath], { commit: false }).catch(() => undefined);
    fail(err, `cannot move ${p.subvol} aside`);
  }
  try {
    await rename(p.newPath, p.subvol);
  } catch (err) {
    await rename(p.oldPath, p.subvol).catch(() => undefined); // else the next recovery does it
    await cmd.deleteSubvolumes([p.newPath], { commit: false }).catch(() => undefined);
    fail(err, `cannot move the new disk into ${p.subvol}`);
  }
  // The new disk is in place: a failed clean-up only leaves `.esnap-old` for recovery to delete.
  await cmd.deleteSubvolumes([p.oldPath], { commit: true }).catch((err: unknown) =>
    process.emitWarning(`btrfs: ${p.oldPath} was left behind, init() deletes it: ${String(err)}`),
  );
}

/** Puts the old disk back when a swap stopped between its renames, then deletes the leftovers. */
export async function recoverSwap(cmd: BtrfsCommands, p: SwapPaths): Promise<void> {
  if ((await lstatOrNull(p.subvol)) === null && isSubvolume(await lstatOrNull(p.oldPath))) {
    await rename(p.oldPath, p.subvol).catch((err: unknown) => fail(err, `cannot move ${p.oldPath} back`));
  }
  const leftovers = await filterAsync([p.newPath, p.oldPath], async (path) => isSubvolume(await lstatOrNull(path)));
  await cmd.deleteSubvolumes(leftovers, { commit: true });
}

/** Walks the plain folders of the storage (not disks, not `snapshots`, its .snapshots folder) for swap leftovers. */
export async function recoverSwaps(cmd: BtrfsCommands, dir: string, snapshots: string): Promise<void> {
  const names = await readdirOrEmpty(dir).catch((err: unknown) => fail(err, `cannot read ${dir}`));
  const seen = new Set<string>();
  for (const name of names) {
    const path = join(dir, name);
    const swap = SWAP_RE.exec(name);
    if (swap) {
      if (seen.has(swap[1]!)) continue;
      seen.add(swap[1]!);
      await recoverSwap(cmd, swapPaths(join(dir, swap[1]!)));
      continue;
    }
    if (path === snapshots) continue;
    const st = await lstatOrNull(path);
    if (st?.isDirectory() && !isSubvolume(st)) await recoverSwaps(cmd, path, snapshots);
  }
}

export function swapPaths(subvol: string): SwapPaths {
  const dir = dirname(subvol);
  const name = subvol.slice(dir.length + 1);
  return { subvol, newPath: join(dir, `.${name}.esnap-new`), oldPath: join(dir, `.${name}.esnap-old`) };
}
