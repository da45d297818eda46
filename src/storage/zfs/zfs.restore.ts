/**
 * A zfs restore (`esbackup snap-restore`, spec 11.2): the target is renamed aside, `zfs send | zfs
 * recv` recreates it, then the old target and the received snapshot are destroyed. A failure puts
 * the original back; a crash in between is repaired by the next init() (repairRestores).
 */
import { StorageError, type DiskRef } from '../driver.js';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { CommandRunner } from '../runner.js';
import { asideWritable, type DiskWritable } from '../stream.js';
import { pointOfNoReturn } from '../op-scope.js';
import type { ZfsCommands } from './zfs.commands.js';
import { asStorageError, zfsError, ZfsError } from './zfs.errors.js';

/** `<disk>-esnap-restore-<ms>`: the target of a restore while its replacement is received. */
export const ASIDE_RE = /-esnap-restore-(\d{13})$/;

export interface RestoreTarget {
  readonly srcDs: string;
  readonly dstDs: string;
  readonly id: string;
  readonly src: DiskRef;
  readonly dst: DiskRef;
  /** Longest the `zfs send | zfs recv` may take. */
  readonly timeoutMs: number;
}

/** Restores snapshot `id` of `srcDs` into `dstDs` (both checked, distinct datasets). */
export async function restoreInto(cmd: ZfsCommands, pipe: NonNullable<CommandRunner['pipe']>, o: RestoreTarget): Promise<void> {
  const { srcDs, dstDs, id, src, dst } = o;
  // Everything is checked before anything changes.
  await cmd.zfs(['zfs', 'get', '-Hp', '-o', 'value', 'type', `${srcDs}@${id}`]).catch((err: unknown) => cmd.whichMissing(err, srcDs));
  const dstSize = await replaceableSize(cmd, dstDs, dst);
  const srcSize = await cmd.imageSize(srcDs);
  if (srcSize !== dstSize) throw new StorageError('size_mismatch', `${src.path} has ${srcSize} bytes, ${dst.path} ${dstSize}`);
  const send = ['zfs', 'send', `${srcDs}@${id}`];
  await replaceDataset(cmd, dstDs, dst, {
    size: dstSize,
    received: id,
    what: `${src.path}@${id}`,
    receive: async (recv) => {
      const { producer, consumer } = await pipe(send, recv, { timeoutMs: o.timeoutMs, env: { LC_ALL: 'C' } });
      if (consumer.code !== 0 || producer.code !== 0) {
        throw zfsError(consumer.code !== 0 ? recv : send, { code: consumer.code || producer.code, stderr: `${consumer.stderr}\n${producer.stderr}` });
      }
    },
  });
}

/** The image size of a disk dataset that a restore may replace: it exists and holds no other datasets. */
export async function replaceableSize(cmd: ZfsCommands, dstDs: string, dst: DiskRef): Promise<number> {
  // Both at once (each a zfs command); a missing disk is named as such whichever answers first.
  const [children, size] = await Promise.all([cmd.childDatasets(dstDs), cmd.imageSize(dstDs).then((n) => ({ n }), (err: unknown) => ({ err }))]);
  if (children === null) throw new StorageError('disk_missing', `Disk ${dst.path} does not exist`);
  if (children.length > 0) throw new StorageError('backend', `Disk ${dst.path} holds other datasets; restore would drop them`);
  if ('err' in size) throw size.err;
  return size.n;
}

export interface Replacement {
  /** The image size the received dataset must hold (the disk's own). */
  readonly size: number;
  /** The snapshot the full stream brings along (`<dstDs>@<received>`), destroyed once it is in. */
  readonly received: string;
  /** What is restored, for messages. */
  readonly what: string;
  /** Runs `zfs recv <dstDs>` (the argv given) fed with a full stream; throws when either side failed. */
  receive(recv: readonly string[]): Promise<void>;
}

/**
 * Replaces disk dataset `dstDs` by a received full stream, as `esbackup snap-restore` does: the
 * disk is renamed aside (ASIDE_RE), `zfs recv` recreates it (it appears only once the stream is
 * whole), then the received snapshot and the old disk with its snapshots are destroyed. A failure
 * puts the original back; a crash in between is repaired by init() (repairRestores).
 */
export async function replaceDataset(cmd: ZfsCommands, dstDs: string, dst: DiskRef, r: Replacement): Promise<void> {
  const aside = `${dstDs}-esnap-restore-${Date.now()}`;
  // zfs-fuse renames only unmounted datasets; unmounting also fails (busy) while a VM holds the image.
  await cmd.zfs(['zfs', 'umount', dstDs]);
  await cmd.zfs(['zfs', 'rename', dstDs, aside]).catch(async (err: unknown) => {
    await cmd.zfs(['zfs', 'mount', dstDs]).catch(() => undefined);
    throw err;
  });
  try {
    await r.receive(['zfs', 'recv', dstDs]);
    const got = await cmd.imageSize(dstDs);
    if (got !== r.size) throw new StorageError('size_mismatch', `${r.what} holds ${got} bytes, ${dst.path} ${r.size}`);
    // A task cancelled until here gets the old disk back (below); from here a cancel answers 406.
    pointOfNoReturn();
  } catch (err) {
    const failure = asStorageError(err, `cannot restore ${r.what} into ${dst.path}`);
    await putBack(cmd, dstDs, aside).catch((undo: unknown) => {
      // The original is safe under the aside name; the next init() puts it back.
      throw new StorageError(failure.code, `${failure.message}; putting ${dstDs} back failed too (it is at ${aside})`, {
        cause: new AggregateError([failure, undo]),
      });
    });
    throw failure;
  }
  // The target now holds the data: drop the received snapshot and the old target (at once; the
  // old one is only garbage if its destroy fails, and the next init() removes it: the restore is done).
  await Promise.all([cmd.zfs(['zfs', 'destroy', `${dstDs}@${r.received}`]), cmd.zfs(['zfs', 'destroy', '-r', aside]).catch(() => undefined)]);
}

/** Undoes a restore half way: the received dataset goes, the original comes back under its name. */
export async function putBack(cmd: ZfsCommands, dstDs: string, aside: string): Promise<void> {
  const received = await cmd.childDatasets(dstDs);
  if (received !== null) await cmd.zfs(['zfs', 'destroy', '-r', dstDs]);
  await cmd.zfs(['zfs', 'rename', aside, dstDs]);
  await cmd.zfs(['zfs', 'mount', dstDs]).catch((err: unknown) => {
    if (!(err instanceof ZfsError && err.reason === 'already_mounted')) throw err;
  });
}

/** After a crash in the middle of a restore: finish it or undo it, whichever is safe. */
export async function repairRestores(cmd: ZfsCommands, dataset: string): Promise<void> {
  const out = await cmd.zfs(['zfs', 'list', '-H', '-o', 'name', '-r', '-t', 'filesystem', dataset]);
  const names = new Set(out.stdout.split('\n').filter((n) => n !== ''));
  for (const aside of names) {
    const m = ASIDE_RE.exec(aside);
    if (!m) continue;
    const dstDs = aside.slice(0, m.index);
    // zfs recv creates the target only once the stream is complete, so a target that exists is
    // whole and the original aside is garbage; a missing target means the original goes back.
    if (names.has(dstDs)) {
      await cmd.zfs(['zfs', 'destroy', '-r', aside]);
    } else {
      await putBack(cmd, dstDs, aside);
      names.add(dstDs); // a second aside copy of the same disk is garbage now
    }
  }
  // A crash between a restore's unmount and its rename (or before a received dataset was mounted)
  // leaves a disk unmounted: every disk operation would then fail on it until it is mounted again.
  const mounted = await cmd.zfs(['zfs', 'list', '-H', '-o', 'name,mounted,canmount,mountpoint', '-r', '-t', 'filesystem', dataset]);
  for (const line of mounted.stdout.split('\n')) {
    const [name, isMounted, canmount, mountpoint] = line.split('\t');
    if (!name || isMounted !== 'no' || canmount !== 'on' || !mountpoint?.startsWith('/') || ASIDE_RE.test(name)) continue;
    // One disk that cannot be mounted now must not stop the storage: its operations say why.
    await cmd.zfs(['zfs', 'mount', name]).catch(() => undefined);
  }
}

/**
 * A restore stream into a zfs disk (ZfsDriver.openDiskWrite): the bytes go to RESTORE_TEMP beside
 * `disk.img` in the disk's own dataset, and commit() renames it over `disk.img` (atomic; the
 * dataset and its snapshots stay). Before the file is made, the dataset gets the user property
 * RESTORE_PROP, cleared after the rename or the abort: a crash in between leaves it, and init()
 * (repairRestoreWrites) finds every such dataset with one `zfs get -r` and removes the file.
 */
export const RESTORE_TEMP = '.disk.img.esnap-restore';
export const RESTORE_PROP = 'es:restore-write';

export async function repairRestoreWrites(cmd: ZfsCommands, dataset: string): Promise<void> {
  const out = await cmd.zfs(['zfs', 'get', '-H', '-r', '-s', 'local', '-o', 'name,value', RESTORE_PROP, dataset]);
  for (const line of out.stdout.split('\n')) {
    const [name, value] = line.split('\t');
    if (!name || value !== RESTORE_TEMP) continue;
    const image = await cmd.imagePath(name).catch(() => null);
    if (image !== null) await unlink(join(dirname(image), RESTORE_TEMP)).catch(() => undefined);
    await cmd.zfs(['zfs', 'inherit', RESTORE_PROP, name]);
  }
}

/** The restore stream of ZfsDriver.openDiskWrite (`ds`: the disk's checked dataset); see above. */
export async function openRestoreWrite(cmd: ZfsCommands, ds: string, disk: DiskRef): Promise<DiskWritable> {
  const image = await cmd.imagePath(ds);
  const st = await stat(image).catch((err: unknown) => {
    throw new StorageError('disk_missing', `Disk ${disk.path} does not exist`, { cause: err });
  });
  const temp = join(dirname(image), RESTORE_TEMP);
  await cmd.zfs(['zfs', 'set', `${RESTORE_PROP}=${RESTORE_TEMP}`, ds]);
  await unlink(temp).catch(() => undefined); // an earlier abort's, if its clean-up failed
  return asideWritable({
    temp,
    mode: st.mode & 0o7777,
    size: st.size,
    disk: disk.path,
    toError: asStorageError,
    switchIn: async () => {
      const fh = await open(temp, 'r');
      await fh.sync();
      await fh.close();
      await rename(temp, image);
      const dir = await open(dirname(image), 'r').catch(() => null);
      await dir?.sync().catch(() => undefined);
      await dir?.close().catch(() => undefined);
    },
    // A failed inherit is left for init() to clear.
    clear: async () => {
      await cmd.zfs(['zfs', 'inherit', RESTORE_PROP, ds]).catch(() => undefined);
    },
  });
}
