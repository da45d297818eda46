/**
 * The `file` driver: a disk is a raw image file `<root>/<disk.path>`; snapshot `<id>` of it is the
 * file `<root>/.snapshots/<disk.path>/<id>` (a reflink clone where the filesystem can, else a sparse
 * copy) plus a side-car `<id>.json` holding `{name, created}`.
 *
 * Crash safety: a snapshot exists exactly when its image file exists under its final name. The
 * side-car is published first and the image last (a no-clobber hard link of a fully written,
 * fsynced temporary), so list() never reports a half snapshot. Temporaries are dot-named
 * (never a valid id, never listed) and init() removes them.
 *
 * Rollback and restore copy the snapshot aside and switch it in with rename(2), journaled, so a
 * crash at any instant leaves the disk old or new (file.switch.ts); init() removes what a crash
 * left. Without reflinks this needs room for a second copy of the disk while it runs.
 *
 * Size semantics (`SnapshotInfo.size`): always the snapshot image's allocated bytes
 * (`st_blocks * 512`). For a sparse copy that is exactly its footprint. For a reflink clone it is an
 * UPPER BOUND: the bytes no longer shared with the disk would be the honest number, but Linux only
 * exposes sharing per extent through FIEMAP (an ioctl Node cannot issue) or tools with
 * human-formatted output (filefrag, xfs_bmap), and btrfs's exclusive bytes need quota groups. So a
 * fresh clone reports the disk's allocated size although it costs almost nothing.
 */
import { constants as fsConstants, type Stats } from 'node:fs';
import { copyFile, link, mkdir, realpath, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { fsyncPath, Journal, writeDurably } from '../journal.js';
import { openSwitch, recoverSwitches, switchInCopy, tempName } from './file.switch.js';
import { createReadStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { lazyWriteStream, type DiskWritable, type SnapshotReadable, type StreamingDriver } from '../stream.js';
import { join, resolve, sep } from 'node:path';
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
import { code, diskPathTaken, fail, isPathTaken, removeEmptyParents, rootStats } from '../fs-root.js';
import type { CommandRunner } from '../runner.js';
import { allocated, cleanUp, openNew, readdirOrEmpty, readSnapshot, realpathOfExisting, removeLeftovers, SIDECAR_EXT, statOrNull, unlinkQuiet } from './file.fs.js';

export interface FileDriverOptions {
  readonly root: string;
  readonly runner: CommandRunner;
  /** Longest a `cp` of one disk may take; a copy of a large disk on slow storage takes hours. */
  readonly copyTimeoutMs?: number;
}

const SNAPSHOT_DIR = '.snapshots';
/** Journal of rollbacks and restores in flight; a dot name is no disk path. */
const JOURNAL_DIR = '.esnap-journal';
/** errno codes of FICLONE meaning "this filesystem (pair) cannot reflink", not "something broke". */
const CANNOT_CLONE = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOTTY', 'ENOSYS']);

interface DiskPaths {
  readonly image: string;
  readonly snapDir: string;
}

export class FileDriver implements StorageDriver, StreamingDriver {
  readonly kind = 'file';
  readonly capabilities: DriverCapabilities = Object.freeze({ rollbackKeepsNewer: true, batchDestroy: true });
  private readonly root: string;
  private readonly runner: CommandRunner;
  private readonly copyTimeoutMs: number;
  private realRoot: string | undefined;
  private readonly journal: Journal;

  constructor(opts: FileDriverOptions) {
    this.root = resolve(opts.root);
    this.journal = new Journal(join(this.root, JOURNAL_DIR));
    this.runner = opts.runner;
    this.copyTimeoutMs = opts.copyTimeoutMs ?? 6 * 3600_000;
  }

  async init(): Promise<void> {
    const snapshots = join(this.root, SNAPSHOT_DIR);
    await mkdir(snapshots, { recursive: true }).catch((err: unknown) => fail(err, 'cannot create the storage folders'));
    this.realRoot = await realpath(this.root);
    await removeLeftovers(snapshots).catch((err: unknown) => fail(err, 'cannot clean up after an earlier crash'));
    await recoverSwitches(this.root, this.journal).catch((err: unknown) => fail(err, 'cannot recover a rollback cut off by a crash'));
  }

  async stats(): Promise<StorageStats> {
    return rootStats(this.root);
  }

  async imageOf(disk: DiskRef): Promise<{ path: string; format: 'raw' }> {
    return { path: (await this.paths(disk)).image, format: 'raw' };
  }

  async diskExists(disk: DiskRef): Promise<boolean> {
    assertDiskPath(disk.path);
    const { image } = await this.paths(disk);
    return (await statOrNull(image))?.isFile() ?? false;
  }

  async imageDamage(disk: DiskRef): Promise<string | null> {
    assertDiskPath(disk.path);
    return rawImageDamage(await statOrNull((await this.paths(disk)).image), disk);
  }

  async createDisk(disk: DiskRef): Promise<void> {
    assertDiskPath(disk.path);
    const size = disk.sizeBytes;
    if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
      throw new StorageError('backend', `createDisk needs a whole, non-negative sizeBytes, got ${String(size)}`);
    }
    const { image } = await this.paths(disk);
    try {
      const fh = await openNew(image);
      try {
        await fh.truncate(size); // sparse: no data blocks are written
      } catch (err) {
        await fh.close();
        await unlinkQuiet(image);
        throw err;
      }
      await fh.close();
    } catch (err) {
      // An image already there is adopted (a retried create); anything else in the way is "taken".
      if (code(err) === 'EEXIST' && (await statOrNull(image))?.isFile()) return;
      if (isPathTaken(err)) throw diskPathTaken(disk.path, err);
      fail(err, `cannot create disk ${disk.path}`);
    }
  }

  async deleteDisk(disk: DiskRef): Promise<void> {
    assertDiskPath(disk.path);
    const { image, snapDir } = await this.paths(disk);
    try {
      // Snapshots first: a crash in between leaves a disk without snapshots, and a retry finishes.
      // Only files go: sub-folders are the snapshot folders of disks below a folder of that name.
      for (const entry of await readdirOrEmpty(snapDir)) {
        if (!entry.isDirectory()) await unlinkQuiet(join(snapDir, entry.name));
      }
      await rmdir(snapDir).catch(() => undefined); // still holds other disks' folders, or never existed
      await removeEmptyParents(snapDir, join(this.root, SNAPSHOT_DIR));
      // EISDIR: the path is a folder of other disks, not a disk; nothing of this disk is left.
      await unlink(image).catch((err: unknown) => {
        if (!['ENOENT', 'ENOTDIR', 'EISDIR'].includes(code(err) ?? '')) throw err;
      });
      await removeEmptyParents(image, this.root);
    } catch (err) {
      fail(err, `cannot delete disk ${disk.path}`);
    }
  }

  async create(disk: DiskRef, id: string, meta: SnapshotMeta): Promise<SnapshotInfo> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const { image, snapDir } = await this.paths(disk);
    await this.requireDisk(image, disk);
    const final = join(snapDir, id);
    const sidecar = final + SIDECAR_EXT;
    if (await statOrNull(final)) throw new StorageError('snapshot_exists', `Snapshot ${id} of ${disk.path} exists`);

    const created = new Date();
    const tmpImage = join(snapDir, tempName(id));
    const tmpSidecar = join(snapDir, tempName(id + SIDECAR_EXT));
    let linked = false;
    let lostRace = false;
    try {
      await mkdir(snapDir, { recursive: true });
      // A side-car without an image is a leftover of a crashed create; replacing it is correct.
      await writeDurably(tmpSidecar, JSON.stringify({ name: meta.name, created: created.toISOString() }));
      await rename(tmpSidecar, sidecar);
      await this.cloneOrCopy(image, tmpImage);
      await fsyncPath(tmpImage);
      try {
        await link(tmpImage, final); // unlike rename, never replaces a snapshot published meanwhile
      } catch (err) {
        if (code(err) !== 'EEXIST') throw err;
        lostRace = true;
        throw new StorageError('snapshot_exists', `Snapshot ${id} of ${disk.path} exists`);
      }
      linked = true;
      await unlink(tmpImage);
      await fsyncPath(snapDir);
      const st = await stat(final);
      return { id, created, size: allocated(st), name: meta.name };
    } catch (err) {
      const leftovers = [tmpImage, tmpSidecar, ...(linked ? [final] : [])];
      // After a lost race the side-car belongs to the snapshot that won; leave it.
      if (!lostRace) leftovers.push(sidecar);
      await Promise.all(leftovers.map(cleanUp));
      fail(err, `cannot create snapshot ${id} of ${disk.path}`);
    }
  }

  async destroy(disk: DiskRef, ids: readonly string[]): Promise<void> {
    assertDiskPath(disk.path);
    ids.forEach(assertSnapshotId);
    const { snapDir } = await this.paths(disk);
    // Image before side-car: once the image is gone list() no longer reports the snapshot.
    const results = await Promise.allSettled(
      ids.map(async (id) => {
        await unlinkQuiet(join(snapDir, id));
        await unlinkQuiet(join(snapDir, id + SIDECAR_EXT));
      }),
    );
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (errors.length > 0) {
      throw new StorageError('backend', `cannot destroy snapshots of ${disk.path}`, { cause: new AggregateError(errors) });
    }
  }

  async rollback(disk: DiskRef, id: string): Promise<void> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const { image, snapDir } = await this.paths(disk);
    await this.requireDisk(image, disk);
    const snapshot = await this.requireSnapshot(snapDir, id, disk);
    await this.switchIn(snapshot.path, image);
  }

  async restore(src: DiskRef, id: string, dst: DiskRef): Promise<void> {
    assertDiskPath(src.path);
    assertDiskPath(dst.path);
    assertSnapshotId(id);
    const { snapDir } = await this.paths(src);
    const { image: target } = await this.paths(dst);
    const snapshot = await this.requireSnapshot(snapDir, id, src);
    const targetStat = await this.requireDisk(target, dst);
    if (targetStat.size !== snapshot.stat.size) {
      throw new StorageError(
        'size_mismatch',
        `Disk ${dst.path} has ${targetStat.size} bytes, snapshot ${id} of ${src.path} has ${snapshot.stat.size}`,
      );
    }
    await this.switchIn(snapshot.path, target);
  }

  /** The snapshot file itself, read start to end (src/storage/stream.ts). */
  async readSnapshotStream(disk: DiskRef, id: string): Promise<SnapshotReadable> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const { snapDir } = await this.paths(disk);
    const snapshot = await this.requireSnapshot(snapDir, id, disk);
    const stream = createReadStream(snapshot.path, { highWaterMark: 4 * 1024 * 1024 });
    const ended = finished(stream).catch((err: unknown) => fail(err, `cannot read snapshot ${id} of ${disk.path}`));
    ended.catch(() => undefined); // observed through done()
    return { stream, size: snapshot.stat.size, done: () => ended, path: snapshot.path };
  }

  /**
   * Written aside and switched in like a rollback (file.switch.ts); the size must be the disk's.
   * The aside file is made by the first write to `stream`, or by the caller at `path`.
   */
  async openDiskWrite(disk: DiskRef): Promise<DiskWritable> {
    assertDiskPath(disk.path);
    const { image } = await this.paths(disk);
    const st = await this.requireDisk(image, disk);
    const sw = await openSwitch({ root: this.root, journal: this.journal, image });
    const aside = lazyWriteStream(sw.temp, {});
    return {
      get stream() {
        return aside.stream();
      },
      path: sw.temp,
      createFile: () => aside.create(),
      async commit() {
        try {
          await aside.finished();
          const got = (await stat(sw.temp)).size;
          if (got !== st.size) throw new StorageError('size_mismatch', `Disk ${disk.path} has ${st.size} bytes, the stream carried ${got}`);
        } catch (err) {
          await sw.abort();
          if (err instanceof StorageError) throw err;
          fail(err, `cannot write disk ${disk.path}`);
        }
        await sw.commit(`cannot switch ${disk.path} to the restored image`);
      },
      async abort() {
        await aside.destroy();
        await sw.abort();
      },
    };
  }

  async list(disk: DiskRef): Promise<SnapshotInfo[]> {
    assertDiskPath(disk.path);
    const { image, snapDir } = await this.paths(disk);
    // A missing disk is an error, not an empty list: an unmounted storage must not read as
    // "every snapshot is gone" to the sync that compares this list with the database.
    await this.requireDisk(image, disk);
    const entries = (await readdirOrEmpty(snapDir)).filter(
      (e) => e.isFile() && !e.name.startsWith('.') && !e.name.endsWith(SIDECAR_EXT),
    );
    const found = await Promise.all(entries.map((e) => readSnapshot(snapDir, e.name)));
    const infos = found.filter((s): s is SnapshotInfo => s !== null);
    return infos.sort((a, b) => a.created.getTime() - b.created.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Resolves a validated disk path and makes sure neither location leaves the root through a symlink. */
  private async paths(disk: DiskRef): Promise<DiskPaths> {
    const image = join(this.root, disk.path);
    const snapDir = join(this.root, SNAPSHOT_DIR, disk.path);
    const realRoot = await this.getRealRoot();
    for (const p of [image, snapDir]) {
      const real = await realpathOfExisting(p);
      if (real !== realRoot && !real.startsWith(realRoot + sep)) {
        throw new StorageError('invalid_name', `Disk path ${JSON.stringify(disk.path)} leads outside the storage root`);
      }
    }
    return { image, snapDir };
  }

  private async getRealRoot(): Promise<string> {
    this.realRoot ??= await realpath(this.root).catch((err: unknown) => fail(err, `storage root ${this.root} is not usable`));
    return this.realRoot;
  }

  private async requireDisk(image: string, disk: DiskRef): Promise<Stats> {
    const st = await statOrNull(image);
    if (!st?.isFile()) throw new StorageError('disk_missing', `Disk ${disk.path} does not exist`);
    return st;
  }

  private async requireSnapshot(snapDir: string, id: string, disk: DiskRef): Promise<{ path: string; stat: Stats }> {
    const path = join(snapDir, id);
    const st = await statOrNull(path);
    if (!st?.isFile()) throw new StorageError('snapshot_missing', `Snapshot ${id} of ${disk.path} does not exist`);
    return { path, stat: st };
  }

  /** Reflink when the filesystem can (instant, shares extents), else a sparse copy through `cp`. */
  private async cloneOrCopy(src: string, dst: string): Promise<void> {
    try {
      await copyFile(src, dst, fsConstants.COPYFILE_FICLONE_FORCE);
      return;
    } catch (err) {
      if (!CANNOT_CLONE.has(code(err) ?? '')) throw err;
    }
    await this.cp(['cp', '--sparse=always', '--reflink=never', '--', src, dst]);
  }

  /** The image gets the snapshot's content, atomically (file.switch.ts); the VM is stopped. */
  private async switchIn(snapshot: string, image: string): Promise<void> {
    await switchInCopy({ root: this.root, journal: this.journal, image, source: snapshot, copy: (src, dst) => this.cloneOrCopy(src, dst) });
  }

  /** Runs cp and turns its failure into a typed error; the only place cp's stderr is read. */
  private async cp(argv: readonly string[]): Promise<void> {
    // LC_ALL=C keeps strerror texts stable, so "No space left on device" can be recognised.
    const result = await this.runner
      .run(argv, { timeoutMs: this.copyTimeoutMs, env: { LC_ALL: 'C' } })
      .catch((err: unknown) => fail(err, 'cp could not run'));
    if (result.code === 0) return;
    const detail = result.stderr.trim() || `exit code ${result.code}`;
    if (/No space left on device|Disk quota exceeded/.test(result.stderr)) {
      throw new StorageError('no_space', `Not enough space: ${detail}`);
    }
    throw new StorageError('backend', `cp failed (exit ${result.code}): ${detail}`);
  }
}
