/**
 * The `btrfs` driver: a disk is a subvolume `<root>/<disk.path>` holding the raw image `disk.img`;
 * snapshot `<id>` of it is the read-only subvolume `<root>/.snapshots/<disk.path>/<id>`; its user
 * name and exact creation time are a record in the disk's index `.snapshots/<disk.path>/.esnap-index`
 * (src/storage/snapshot-index.ts; btrfs has no user properties). Storages made with the old layout
 * (a side-car `<id>.json` per snapshot) are converted by init(); list() still reads a side-car.
 *
 * Crash safety:
 * - create: the index record is appended (not fsynced) BEFORE the snapshot, and a snapshot appears
 *   whole when btrfs commits it. A crash leaves either no snapshot (a record without a folder is
 *   never listed) or a whole one, whose name a machine crash may have lost (listed with name null).
 * - rollback/restore swap a writable snapshot in, in four steps, with fixed names next to the disk:
 *     1. `btrfs subvolume snapshot <snap> <dir>/.<name>.esnap-new`
 *     2. rename `<dir>/<name>`             → `<dir>/.<name>.esnap-old`
 *     3. rename `<dir>/.<name>.esnap-new`  → `<dir>/<name>`
 *     4. `btrfs subvolume delete --commit-after <dir>/.<name>.esnap-old` (the commit makes 2-3 durable)
 *   Only between 2 and 3 is nothing at the path; recovery (init(), and every later swap of that disk)
 *   puts `.esnap-old` back when the path is empty, then deletes whatever `.esnap-new`/`.esnap-old`
 *   is left. So after a crash at any point the disk is the old one (crash before 3) or the new one.
 *   Linux has an atomic exchange (renameat2 RENAME_EXCHANGE), but Node cannot call it.
 * - The disk's inode and subvolume id change with a swap: anything holding the old disk open (a
 *   running VM) keeps the old one. The agent refuses rollback and restore while the VM runs.
 *
 * Size (`SnapshotInfo.size`): the snapshot subvolume's exclusive bytes from its quota group when
 * quotas are on and consistent (exact as of the last transaction commit), else null.
 */
import type { Stats } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { mkdir, open, rmdir, stat, statfs, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import {
  assertDiskPath,
  assertSnapshotId,
  rawImageDamage,
  StorageError,
  type DiskRef,
  type DriverCapabilities,
  type SnapshotInfo,
  type SnapshotMeta,
  type StorageDriver,
  type StorageStats,
} from '../driver.js';
import { code, diskPathTaken, isPathTaken, removeEmptyParents, rootStats } from '../fs-root.js';
import type { CommandRunner } from '../runner.js';
import { createReadStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { assertBackupFits, lazyWriteStream, type DatasetFeed, type DiskWritable, type SnapshotReadable, type StreamingDriver } from '../stream.js';
import { BtrfsCommands } from './btrfs.commands.js';
import { recoverSwap, recoverSwaps, swapIn, swapPaths, swapPrepared, type SwapPaths } from './btrfs.swap.js';
import { receiveInto, removeReceiveLeftovers } from './btrfs.receive.js';
import {
  fail,
  filterAsync,
  isSubvolume,
  lstatOrNull,
  lstatSyncOrNull,
  readdirOrEmpty,
  readSnapshotSync,
  SIDECAR_EXT,
  SIDECAR_TMP_RE,
  unlinkQuiet,
} from './btrfs.fs.js';
import {
  appendIndex,
  compactIfLarge,
  INDEX_FILE,
  prepareAppend,
  readIndexCached,
  undoAppend,
  type AppendResult,
  type PendingAppend,
} from '../snapshot-index.js';
import { migrateSnapshotFolders } from './btrfs.index.js';
import { QgroupReader } from './btrfs.qgroups.js';

export interface BtrfsDriverOptions {
  readonly root: string;
  readonly runner: CommandRunner;
  /** Longest one btrfs command may run (a snapshot waits for a transaction commit). */
  readonly commandTimeoutMs?: number;
}

const SNAPSHOT_DIR = '.snapshots';
const IMAGE = 'disk.img';
const BTRFS_SUPER_MAGIC = 0x9123683e;
/** NAME_MAX is 255; `.<name>.esnap-old` must still fit. */
const MAX_SEGMENT_BYTES = 240;
/** Snapshots list() reads between two yields to the event loop. */
const LIST_CHUNK = 100;

interface DiskPaths extends SwapPaths {
  readonly image: string;
  readonly snapDir: string;
}

export class BtrfsDriver implements StorageDriver, StreamingDriver {
  readonly kind = 'btrfs';
  readonly capabilities: DriverCapabilities = Object.freeze({ rollbackKeepsNewer: true, batchDestroy: true });
  private readonly root: string;
  private readonly runner: CommandRunner;
  private readonly timeoutMs: number;
  private readonly qgroups: QgroupReader;
  private readonly cmd: BtrfsCommands;

  constructor(opts: BtrfsDriverOptions) {
    this.root = resolve(opts.root);
    this.runner = opts.runner;
    this.timeoutMs = opts.commandTimeoutMs ?? 5 * 60_000;
    this.qgroups = new QgroupReader(this.runner, this.root, this.timeoutMs);
    this.cmd = new BtrfsCommands(this.runner, this.timeoutMs);
  }

  /**
   * Checks the root is on btrfs, then repairs what a crash can leave: swap leftovers next to disks
   * (the old disk goes back when its path is empty; the rest is deleted) and temporaries; converts
   * side-cars of the old layout into the disks' indexes (btrfs.index.ts).
   */
  async init(): Promise<void> {
    const snapshots = join(this.root, SNAPSHOT_DIR);
    await mkdir(snapshots, { recursive: true }).catch((err: unknown) => fail(err, 'cannot create the storage folders'));
    const fs = await statfs(this.root).catch((err: unknown) => fail(err, `cannot read storage ${this.root}`));
    if (fs.type !== BTRFS_SUPER_MAGIC) throw new StorageError('backend', `Storage root ${this.root} is not on a btrfs filesystem`);
    this.qgroups.reset();
    await recoverSwaps(this.cmd, this.root, join(this.root, SNAPSHOT_DIR));
    await removeReceiveLeftovers(this.cmd, this.root);
    await migrateSnapshotFolders(snapshots).catch((err: unknown) => fail(err, 'cannot clean up after an earlier crash'));
  }

  async stats(): Promise<StorageStats> {
    return rootStats(this.root);
  }

  async imageOf(disk: DiskRef): Promise<{ path: string; format: 'raw' }> {
    return { path: this.paths(disk).image, format: 'raw' };
  }

  async diskExists(disk: DiskRef): Promise<boolean> {
    const p = this.paths(disk);
    return this.diskStat(p) !== null;
  }

  async imageDamage(disk: DiskRef): Promise<string | null> {
    return rawImageDamage(this.diskStat(this.paths(disk)), disk);
  }

  async createDisk(disk: DiskRef): Promise<void> {
    assertDiskPath(disk.path);
    const size = disk.sizeBytes;
    if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
      throw new StorageError('backend', `createDisk needs a whole, non-negative sizeBytes, got ${String(size)}`);
    }
    const p = this.paths(disk);
    const st = await lstatOrNull(p.subvol);
    if (st === null) {
      // An index left by a deleteDisk cut short must not name this disk's snapshots.
      await unlinkQuiet(join(p.snapDir, INDEX_FILE)).catch((err: unknown) => fail(err, `cannot create disk ${disk.path}`));
      for (let attempt = 0; ; attempt++) {
        await mkdir(dirname(p.subvol), { recursive: true }).catch((err: unknown) => {
          if (isPathTaken(err)) throw diskPathTaken(disk.path, err);
          fail(err, `cannot create disk ${disk.path}`);
        });
        try {
          await this.cmd.btrfs(['btrfs', 'subvolume', 'create', p.subvol]);
          break;
        } catch (err) {
          // A delete of another disk removed the folder, empty until now (removeEmptyParents): again, once.
          if (attempt > 0 || (await lstatOrNull(dirname(p.subvol))) !== null) throw err;
        }
      }
    } else if (!isSubvolume(st)) {
      throw diskPathTaken(disk.path);
    }
    // A subvolume without an image is a createDisk that crashed half way: finish it.
    try {
      const fh = await open(p.image, 'wx');
      await fh.truncate(size).finally(() => fh.close()); // sparse: no data blocks are written
    } catch (err) {
      if (code(err) !== 'EEXIST') {
        await unlink(p.image).catch(() => undefined);
        fail(err, `cannot create disk ${disk.path}`);
      }
      if (!(await lstatOrNull(p.image))?.isFile()) throw diskPathTaken(disk.path);
    }
  }

  /** Snapshots, swap leftovers and the disk go in ONE delete (snapshots first), committed. */
  async deleteDisk(disk: DiskRef): Promise<void> {
    const p = this.paths(disk);
    const snapshots = (await this.snapshotEntries(p.snapDir)).map((name) => join(p.snapDir, name));
    const own = await filterAsync([p.newPath, p.oldPath, p.subvol], async (path) => isSubvolume(await lstatOrNull(path)));
    await this.cmd.deleteSubvolumes([...snapshots, ...own], { commit: true });
    try {
      for (const name of await readdirOrEmpty(p.snapDir)) {
        if (name === INDEX_FILE || name.endsWith(SIDECAR_EXT) || SIDECAR_TMP_RE.test(name)) await unlinkQuiet(join(p.snapDir, name));
      }
      // Still holds the folders of disks below this path (not ours), or never existed.
      await rmdir(p.snapDir).catch(() => undefined);
      await removeEmptyParents(p.snapDir, join(this.root, SNAPSHOT_DIR));
      await removeEmptyParents(p.subvol, this.root);
    } catch (err) {
      fail(err, `cannot delete disk ${disk.path}`);
    }
  }

  async create(disk: DiskRef, id: string, meta: SnapshotMeta): Promise<SnapshotInfo> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const p = this.paths(disk);
    this.requireDisk(p, disk);
    const final = join(p.snapDir, id);
    // Checked first because btrfs snapshots INTO an existing folder instead of failing; the per-disk
    // task lock keeps a second create of the same disk from racing this check.
    if (lstatSyncOrNull(final) !== null) throw new StorageError('snapshot_exists', `Snapshot ${id} of ${disk.path} exists`);
    const created = new Date();
    const what = `cannot create snapshot ${id} of ${disk.path}`;
    let appended: AppendResult;
    try {
      mkdirSync(p.snapDir, { recursive: true });
      // Before the snapshot: a killed process never loses the name (see the header).
      appended = appendIndex(p.snapDir, [{ id, name: meta.name, created }]);
    } catch (err) {
      fail(err, what);
    }
    try {
      await this.cmd.btrfs(['btrfs', 'subvolume', 'snapshot', '-r', p.subvol, final], { missing: 'disk_missing', exists: 'snapshot_exists' });
    } catch (err) {
      // Taken back so a failed create leaves the index as it was (a record without a snapshot
      // folder would never be listed anyway).
      if (lstatSyncOrNull(final) === null) {
        try {
          undoAppend(p.snapDir, appended);
        } catch {
          /* see above */
        }
      }
      throw err;
    }
    return { id, created, size: await this.qgroups.exclusiveBytesOf(final), name: meta.name };
  }

  async destroy(disk: DiskRef, ids: readonly string[]): Promise<void> {
    assertDiskPath(disk.path);
    ids.forEach(assertSnapshotId);
    const p = this.paths(disk);
    const unique = [...new Set(ids)];
    if (unique.length === 0) return;
    // No existence check first (it was a tenth of a destroy): btrfs deletes the paths that exist and
    // complains about the others, and deleteSubvolumes then accepts the failure when none of the
    // paths is left. The argv is exactly the bare `btrfs subvolume delete` of those paths (snapDir
    // is normalised and an id has no slash, so concatenation is what join() would make).
    const deleting = this.cmd.deleteSubvolumes(
      unique.map((id) => `${p.snapDir}/${id}`),
      { commit: false },
    );
    // The records follow the delete: a record without a snapshot is never listed, so a crash before
    // the write changes nothing visible (the records matter only if an id were ever taken again).
    // Everything but the write is done while btrfs runs (the process has been spawned by now).
    let pending: PendingAppend | undefined;
    let unprepared: unknown;
    try {
      pending = prepareAppend(p.snapDir, unique.map((id) => ({ id, deleted: true as const })));
    } catch (err) {
      unprepared = err; // reported after the delete, which must be awaited either way
    }
    try {
      await deleting;
    } catch (err) {
      pending?.abandon();
      throw err;
    }
    if (!pending) fail(unprepared, `cannot update the snapshot index of ${disk.path}`);
    try {
      const { size } = pending.commit();
      await compactIfLarge(p.snapDir, size, (id) => lstatSyncOrNull(join(p.snapDir, id)) !== null, pending.base);
    } catch (err) {
      if (code(err) !== 'ENOENT') fail(err, `cannot update the snapshot index of ${disk.path}`);
    }
  }

  async rollback(disk: DiskRef, id: string): Promise<void> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const p = this.paths(disk);
    this.requireDisk(p, disk);
    const snapshot = this.requireSnapshot(p, id, disk);
    await swapIn(this.cmd, p, snapshot);
  }

  async restore(src: DiskRef, id: string, dst: DiskRef): Promise<void> {
    assertDiskPath(src.path);
    assertDiskPath(dst.path);
    assertSnapshotId(id);
    const ps = this.paths(src);
    const pd = this.paths(dst);
    const snapshot = this.requireSnapshot(ps, id, src);
    const target = this.requireDisk(pd, dst);
    const source = await stat(join(snapshot, IMAGE)).catch((err: unknown) => fail(err, `snapshot ${id} of ${src.path} has no image`));
    if (source.size !== target.size) {
      throw new StorageError('size_mismatch', `Disk ${dst.path} has ${target.size} bytes, snapshot ${id} of ${src.path} has ${source.size}`);
    }
    await swapIn(this.cmd, pd, snapshot);
  }

  /**
   * Replaces a disk by a native full stream (the restore of a dataset backup; btrfs.receive.ts):
   * the disk's snapshots stay (they are subvolumes of their own).
   */
  async receiveDisk(dst: DiskRef, received: string, feed: DatasetFeed): Promise<void> {
    assertSnapshotId(received);
    const pd = this.paths(dst);
    const target = this.requireDisk(pd, dst);
    assertBackupFits(dst, target.size);
    await receiveInto(this.cmd, this.root, pd, { disk: dst.path, size: target.size, image: IMAGE, received, feed });
  }

  async list(disk: DiskRef): Promise<SnapshotInfo[]> {
    const p = this.paths(disk);
    // A missing disk is an error, not []: an unmounted storage must not read as "all snapshots gone".
    this.requireDisk(p, disk);
    // The qgroup process (when quotas are on) runs while the folder and the index are read; never rejects.
    const sizes = this.qgroups.exclusiveBytesIn(p.snapDir).catch(() => null);
    const names = await readdirOrEmpty(p.snapDir).catch((err: unknown) => fail(err, `cannot read ${p.snapDir}`));
    const candidates = names.filter((n) => !n.startsWith('.') && !n.endsWith(SIDECAR_EXT));
    const index = await readIndexCached(p.snapDir);
    const sidecars = new Set(names.filter((n) => n.endsWith(SIDECAR_EXT)));
    const found: Array<{ id: string; created: Date; name: string | null; ms: number }> = [];
    let statted = 0;
    for (const name of candidates) {
      const entry = index.get(name);
      // An indexed name is a snapshot esnap made: btrfs creates it whole, so its folder entry is
      // enough. Anything else (made by hand, the old layout, a record lost in a crash) is checked
      // to be a subvolume and dated by btrfs; those are few, and read in chunks between yields.
      if (entry?.created) {
        found.push({ id: name, created: entry.created, name: entry.name, ms: entry.created.getTime() });
        continue;
      }
      if (++statted % LIST_CHUNK === 0) await yieldToEventLoop();
      const info = readSnapshotSync(p.snapDir, name, !entry && sidecars.has(name + SIDECAR_EXT));
      if (info) found.push({ id: name, created: info.created, name: entry ? entry.name : (info.name ?? null), ms: info.created.getTime() });
    }
    found.sort((a, b) => a.ms - b.ms || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const bytes = await sizes;
    return found.map((s) => ({ id: s.id, created: s.created, size: bytes?.get(s.id) ?? null, name: s.name }));
  }

  /** The snapshot's image file, read start to end (src/storage/stream.ts). */
  async readSnapshotStream(disk: DiskRef, id: string): Promise<SnapshotReadable> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const p = this.paths(disk);
    const image = join(this.requireSnapshot(p, id, disk), IMAGE);
    const st = await stat(image).catch((err: unknown) => fail(err, `snapshot ${id} of ${disk.path} has no image`));
    const stream = createReadStream(image, { highWaterMark: 4 * 1024 * 1024 });
    const ended = finished(stream).catch((err: unknown) => fail(err, `cannot read snapshot ${id} of ${disk.path}`));
    ended.catch(() => undefined);
    return { stream, size: st.size, done: () => ended, path: image };
  }

  /**
   * A restore stream: written into `disk.img` of a new subvolume `.esnap-new` beside the disk,
   * swapped in like a rollback (steps 2-4 of the header) on commit; a crash before the swap
   * leaves `.esnap-new`, which recovery deletes.
   */
  async openDiskWrite(disk: DiskRef): Promise<DiskWritable> {
    assertDiskPath(disk.path);
    const p = this.paths(disk);
    const before = this.requireDisk(p, disk);
    await recoverSwap(this.cmd, p);
    await this.cmd.btrfs(['btrfs', 'subvolume', 'create', p.newPath]);
    const image = join(p.newPath, IMAGE);
    const aside = lazyWriteStream(image, { mode: before.mode & 0o7777 });
    const drop = (): Promise<void> => this.cmd.deleteSubvolumes([p.newPath], { commit: false }).catch(() => undefined);
    return {
      get stream() {
        return aside.stream();
      },
      path: image,
      createFile: () => aside.create(),
      commit: async () => {
        try {
          await aside.finished();
          const got = (await stat(image)).size;
          if (got !== before.size) throw new StorageError('size_mismatch', `Disk ${disk.path} has ${before.size} bytes, the stream carried ${got}`);
          const fh = await open(image, 'r');
          await fh.sync();
          await fh.close();
        } catch (err) {
          await drop();
          fail(err, `cannot write disk ${disk.path}`);
        }
        await swapPrepared(this.cmd, p);
      },
      abort: async () => {
        await aside.destroy();
        await drop();
      },
    };
  }
  /**
   * Validates a disk path and resolves its locations. No folder on the way may be a symlink (the
   * path would leave the storage) or a subvolume (a disk inside a disk cannot be deleted alone).
   * Synchronous, like the checks below: a handful of lstat calls on cached entries cost less than
   * their thread-pool round trips, which were a tenth of a create.
   */
  private paths(disk: DiskRef): DiskPaths {
    assertDiskPath(disk.path);
    const segments = disk.path.split('/');
    if (segments.some((s) => Buffer.byteLength(s) > MAX_SEGMENT_BYTES)) {
      throw new StorageError('invalid_name', `Invalid disk path: ${JSON.stringify(disk.path)} (a name is over ${MAX_SEGMENT_BYTES} bytes)`);
    }
    this.checkChain(this.root, segments.slice(0, -1), disk, true);
    this.checkChain(join(this.root, SNAPSHOT_DIR), segments, disk, false);
    const subvol = join(this.root, ...segments);
    const last = lstatSyncOrNull(subvol);
    if (last?.isSymbolicLink()) throw new StorageError('invalid_name', `Disk path ${JSON.stringify(disk.path)} is a symlink`);
    return { ...swapPaths(subvol), image: join(subvol, IMAGE), snapDir: join(this.root, SNAPSHOT_DIR, ...segments) };
  }

  private checkChain(base: string, segments: readonly string[], disk: DiskRef, disks: boolean): void {
    let path = base;
    for (const segment of segments) {
      path = join(path, segment);
      const st = lstatSyncOrNull(path);
      if (st === null) return; // the rest does not exist yet
      if (st.isSymbolicLink()) throw new StorageError('invalid_name', `Disk path ${JSON.stringify(disk.path)} leads outside the storage root`);
      // Another disk's subvolume or a file on the way: the one "taken" answer, naming neither.
      if ((disks && isSubvolume(st)) || !st.isDirectory()) throw diskPathTaken(disk.path);
    }
  }

  /** The image's stat when the disk exists (a subvolume holding a disk.img file), else null. */
  private diskStat(p: DiskPaths): Stats | null {
    if (!isSubvolume(lstatSyncOrNull(p.subvol))) return null;
    const image = lstatSyncOrNull(p.image);
    return image?.isFile() ? image : null;
  }

  private requireDisk(p: DiskPaths, disk: DiskRef): Stats {
    const st = this.diskStat(p);
    if (st === null) throw new StorageError('disk_missing', `Disk ${disk.path} does not exist`);
    return st;
  }

  private requireSnapshot(p: DiskPaths, id: string, disk: DiskRef): string {
    const path = join(p.snapDir, id);
    if (!isSubvolume(lstatSyncOrNull(path))) throw new StorageError('snapshot_missing', `Snapshot ${id} of ${disk.path} does not exist`);
    return path;
  }

  /** Names in a snapshot folder that are snapshots: subvolumes, not dot-named. */
  private async snapshotEntries(snapDir: string): Promise<string[]> {
    const names = (await readdirOrEmpty(snapDir).catch((err: unknown) => fail(err, `cannot read ${snapDir}`))).filter(
      (n) => !n.startsWith('.') && !n.endsWith(SIDECAR_EXT),
    );
    return filterAsync(names, async (name) => isSubvolume(await lstatOrNull(join(snapDir, name))));
  }
}
