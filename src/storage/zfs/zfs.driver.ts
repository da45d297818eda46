/**
 * The `zfs` driver (Danube's node tool, spec 11.1): a disk is the dataset `<dataset>/<disk.path>`
 * whose image is the raw file `disk.img` in the dataset's mountpoint (zfs-fuse has no zvols); a
 * snapshot is `<disk dataset>@<id>` carrying `es:snapname` (the user's name) and `es:created`
 * (epoch ms: zfs `creation` has whole seconds, too coarse to order snapshots taken in one second).
 *
 * Rollback is `zfs rollback -r`: newer snapshots are DESTROYED (rollbackKeepsNewer: false). Restore
 * follows `esbackup snap-restore` (spec 11.2): the target is renamed aside, `zfs send | zfs recv`
 * recreates it, then the old target and the received snapshot are destroyed, so the target ends
 * with no snapshots. A failure renames the original back; a crash in between is repaired by the
 * next init() (the aside name is reserved: no disk path may end like it).
 *
 * Differences between zfs implementations come from one table (zfs.capabilities.ts), detected
 * once in init(). Every command goes through `zfs()`, which retries "dataset is busy" (zfs-fuse
 * says so for a moment after a dataset was used) and turns stderr into typed errors.
 *
 * Example:
 *   const driver = new ZfsDriver({ dataset: 'tank/vms', runner });
 *   await driver.init();
 *   await driver.createDisk({ path: 'web01-disk0', sizeBytes: 10 * 2 ** 30 });
 *   await driver.create({ path: 'web01-disk0' }, 'es-1', { name: 'before-upgrade' });
 */
import { open, stat, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute, normalize } from 'node:path';
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
import type { AtomicSnapshotItem, AtomicSnapshots } from '../capabilities.js';
import type { CommandRunner } from '../runner.js';
import { diskPathTaken } from '../fs-root.js';
import {
  destroyCommands,
  detectCapabilities,
  listCommand,
  parseList,
  PROP_CREATED,
  PROP_SNAPNAME,
  snapshotCommands,
  type ZfsCapabilities,
} from './zfs.capabilities.js';
import { asStorageError, isMissing, zfsError, ZfsError } from './zfs.errors.js';
import { IMAGE_NAME, ZfsCommands } from './zfs.commands.js';
import { ASIDE_RE, openRestoreWrite, repairRestores, repairRestoreWrites, replaceableSize, replaceDataset, restoreInto } from './zfs.restore.js';
import { assertBackupFits, type DatasetFeed, type DiskWritable, type SnapshotReadable } from '../stream.js';
import { readThroughClone, repairReadClones } from './zfs.read.js';

export interface ZfsDriverOptions {
  /** The storage's parent dataset, e.g. `tank/vms`; disks are datasets below it. */
  readonly dataset: string;
  readonly runner: CommandRunner;
  /** Use this table instead of probing the installed zfs (an operator pinning it, a test of the OpenZFS paths). */
  readonly capabilities?: ZfsCapabilities;
  /** Waits between retries of a command refused with "dataset is busy"; its length is the retry count. */
  readonly busyRetryDelaysMs?: readonly number[];
  /** Longest one zfs command may take. */
  readonly timeoutMs?: number;
  /** Longest a restore's `zfs send | zfs recv` may take (a large disk takes hours). */
  readonly restoreTimeoutMs?: number;
}

/** The disk's bytes inside its dataset. */
const ASIDE_SUFFIX_MAX = '-esnap-restore-'.length + 13;
/** ZFS_MAX_DATASET_NAME_LEN (256) minus the NUL, `@` and the longest id (`es-` + 18 digits). */
const MAX_DATASET = 255 - 1 - 21 - ASIDE_SUFFIX_MAX;
/** A storage dataset: `pool[/child…]`, components of the characters every zfs accepts. */
const DATASET_RE = /^[A-Za-z][A-Za-z0-9_.:-]*(?:\/[A-Za-z0-9_.:-]+)*$/;
const DEFAULT_BUSY_DELAYS = [50, 100, 200, 400, 800, 1600];
/** Seconds' worth of difference tolerated between `es:created` and zfs `creation` (busy retries). */
const CREATED_SLACK_MS = 10_000;

export class ZfsDriver implements StorageDriver, AtomicSnapshots {
  readonly kind = 'zfs';
  readonly dataset: string;
  private readonly runner: CommandRunner;
  private readonly cmd: ZfsCommands;
  private readonly restoreTimeoutMs: number;
  private caps: ZfsCapabilities | undefined;
  private initializing: Promise<void> | undefined;

  constructor(opts: ZfsDriverOptions) {
    if (!DATASET_RE.test(opts.dataset) || opts.dataset.length > MAX_DATASET - 2) {
      throw new StorageError('invalid_name', `Invalid storage dataset: ${JSON.stringify(opts.dataset)}`);
    }
    this.dataset = opts.dataset;
    this.runner = opts.runner;
    this.caps = opts.capabilities;
    this.cmd = new ZfsCommands(this.runner, this.dataset, opts.busyRetryDelaysMs ?? DEFAULT_BUSY_DELAYS, opts.timeoutMs ?? 5 * 60_000);
    this.restoreTimeoutMs = opts.restoreTimeoutMs ?? 12 * 3600_000;
  }

  /** Known once init() has run: until then batchDestroy is reported conservatively as false. */
  get capabilities(): DriverCapabilities {
    return { rollbackKeepsNewer: false, batchDestroy: this.caps?.commaDestroy ?? false };
  }

  /** The table init() detected (or the one passed in). */
  get zfsCapabilities(): ZfsCapabilities {
    if (!this.caps) throw new StorageError('backend', 'ZfsDriver.init() has not run');
    return this.caps;
  }

  init(): Promise<void> {
    // Once per instance; a failed init (daemon down) may be retried.
    this.initializing ??= this.doInit().catch((err: unknown) => {
      this.initializing = undefined;
      throw err;
    });
    return this.initializing;
  }

  private async doInit(): Promise<void> {
    await this.cmd.zfs(['zfs', 'get', '-Hp', '-o', 'value', 'type', this.dataset]);
    this.caps ??= await detectCapabilities((argv) => this.cmd.runZfs(argv), this.dataset);
    await repairRestores(this.cmd, this.dataset);
    await repairRestoreWrites(this.cmd, this.dataset);
    await repairReadClones(this.cmd, this.dataset);
  }

  /**
   * A snapshot's image for a type 2 backup (src/storage/stream.ts), read through a temporary
   * clone of the snapshot (zfs.read.ts): `path` is the clone's `disk.img`, and release() (or
   * reading `stream` to its end) removes the clone; init() removes one a crash left.
   */
  async readSnapshotStream(disk: DiskRef, id: string): Promise<SnapshotReadable> {
    const ds = this.diskDataset(disk);
    assertSnapshotId(id);
    return readThroughClone(this.cmd, this.dataset, ds, id, `snapshot ${id} of ${disk.path}`);
  }

  /**
   * A restore stream (src/storage/stream.ts): written to a file beside `disk.img` in the disk's
   * dataset and renamed over it on commit (zfs.restore.ts, RESTORE_TEMP); the disk's snapshots
   * stay. Room for a second copy of the disk's data is needed while it runs.
   */
  async openDiskWrite(disk: DiskRef): Promise<DiskWritable> {
    return openRestoreWrite(this.cmd, this.diskDataset(disk), disk);
  }

  async stats(): Promise<StorageStats> {
    const props = await this.cmd.getProps(this.dataset, ['used', 'available']);
    const used = Number(props.get('used'));
    const free = Number(props.get('available'));
    if (!Number.isSafeInteger(used) || !Number.isSafeInteger(free)) throw new StorageError('backend', `zfs gave no sizes for ${this.dataset}`);
    return { size: used + free, free };
  }

  async diskExists(disk: DiskRef): Promise<boolean> {
    const ds = this.diskDataset(disk);
    const image = await this.cmd.imagePath(ds).catch((err: unknown) => (isMissing(err) ? null : Promise.reject(err)));
    return image !== null && ((await stat(image).catch(() => null))?.isFile() ?? false);
  }

  async imageDamage(disk: DiskRef): Promise<string | null> {
    const ds = this.diskDataset(disk);
    const image = await this.cmd.imagePath(ds).catch((err: unknown) => (isMissing(err) ? null : Promise.reject(err)));
    return rawImageDamage(image === null ? null : await stat(image).catch(() => null), disk);
  }

  /** Where the disk's bytes are (what a VM or the tests open); the dataset must be mounted. */
  async imagePathOf(disk: DiskRef): Promise<string> {
    return this.cmd.imagePath(this.diskDataset(disk));
  }

  async imageOf(disk: DiskRef): Promise<{ path: string; format: 'raw' }> {
    return { path: await this.imagePathOf(disk), format: 'raw' };
  }

  /**
   * `disk.img` at the top of the mountpoint of a dataset under this storage's dataset: that
   * dataset's disk path (zfs itself says which dataset a folder is in, `zfs list <path>`).
   */
  async diskOfImage(file: string): Promise<string | null> {
    if (!isAbsolute(file) || normalize(file) !== file || basename(file) !== IMAGE_NAME) return null;
    const folder = dirname(file);
    const r = await this.cmd.runZfs(['zfs', 'list', '-H', '-o', 'name,mountpoint', folder]);
    const [name, mountpoint] = r.code === 0 ? r.stdout.trim().split('\t') : [];
    if (mountpoint === folder && name !== undefined && name.startsWith(`${this.dataset}/`)) return name.slice(this.dataset.length + 1);
    // zfs-fuse does not always resolve a path to its dataset (seen in the chaos run under load: a
    // disk dataset made a moment before came back as not under the storage): the storage's own
    // datasets by mountpoint then.
    const all = await this.cmd.runZfs(['zfs', 'list', '-H', '-r', '-t', 'filesystem', '-o', 'name,mountpoint', this.dataset]);
    if (all.code !== 0) return null;
    for (const line of all.stdout.split('\n')) {
      const [n, m] = line.split('\t');
      if (m === folder && n !== undefined && n.startsWith(`${this.dataset}/`)) return n.slice(this.dataset.length + 1);
    }
    return null;
  }

  async createDisk(disk: DiskRef): Promise<void> {
    const ds = this.diskDataset(disk);
    const size = disk.sizeBytes;
    if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
      throw new StorageError('backend', `createDisk needs a whole, non-negative sizeBytes, got ${String(size)}`);
    }
    // Datasets from the storage down to the disk; the missing ones are created top-down, and
    // destroyed again (newest first) if the disk cannot be completed: no half disk stays behind.
    const parts = disk.path.split('/');
    const chain = parts.map((_, i) => `${this.dataset}/${parts.slice(0, i + 1).join('/')}`);
    const listArgv = ['zfs', 'list', '-H', '-o', 'name', ...chain];
    const listed = await this.cmd.runZfs(listArgv);
    // Exit 1 with "does not exist" for the missing ones is the expected answer; anything else is not.
    if (listed.code !== 0 && !isMissing(zfsError(listArgv, listed))) throw zfsError(listArgv, listed);
    const existing = new Set(listed.stdout.split('\n'));
    const made: string[] = [];
    try {
      for (const name of chain.filter((n) => !existing.has(n))) {
        await this.cmd.zfs(['zfs', 'create', name]).catch((err: unknown) => {
          if (!(err instanceof ZfsError && err.reason === 'exists')) throw err; // created meanwhile: fine
        });
        made.unshift(name);
      }
      const image = await this.cmd.imagePath(ds);
      const fh = await open(image, 'wx').catch((err: NodeJS.ErrnoException) => (err.code === 'EEXIST' ? null : Promise.reject(err)));
      if (fh === null) {
        if (!(await stat(image)).isFile()) throw diskPathTaken(disk.path);
        return;
      }
      try {
        await fh.truncate(size); // sparse: no data blocks are written
        await fh.close();
      } catch (err) {
        await fh.close().catch(() => undefined);
        await unlink(image).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      for (const name of made) await this.cmd.zfs(['zfs', 'destroy', '-r', name]).catch(() => undefined);
      throw asStorageError(err, `cannot create disk ${disk.path}`);
    }
  }

  async deleteDisk(disk: DiskRef): Promise<void> {
    const ds = this.diskDataset(disk);
    const children = await this.cmd.childDatasets(ds);
    if (children === null) return; // already gone: a retried delete succeeds
    if (children.length === 0) {
      await this.cmd.zfs(['zfs', 'destroy', '-r', ds]);
      await this.cmd.destroyEmptyParents(ds);
      return;
    }
    // The dataset also holds other disks: remove only what belongs to this one.
    const ids = (await this.list(disk)).map((s) => s.id);
    await this.destroy(disk, ids);
    await unlink(await this.cmd.imagePath(ds)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw asStorageError(err, `cannot delete disk ${disk.path}`);
    });
  }

  async create(disk: DiskRef, id: string, meta: SnapshotMeta): Promise<SnapshotInfo> {
    return (await this.createMany([disk], id, meta))[0]!;
  }

  /**
   * The same snapshot id on several disks of this storage, all or none: one atomic `zfs snapshot`
   * where the installed zfs takes several (capability multiSnapshot), else one call per disk and,
   * when one fails, the snapshots already made are destroyed before the error is raised.
   */
  async createMany(disks: readonly DiskRef[], id: string, meta: SnapshotMeta): Promise<SnapshotInfo[]> {
    const snapshots = disks.map((d) => this.snapshotName(d, id));
    return this.snapshotAll(snapshots, meta);
  }

  /** AtomicSnapshots: disks of one pool share a key while this zfs takes several snapshots per call. */
  atomicGroup(disk: DiskRef): string | null {
    this.diskDataset(disk);
    return this.caps?.multiSnapshot ? `zfs:${this.pool}` : null;
  }

  /**
   * AtomicSnapshots: each item's own id on its disk, in ONE `zfs snapshot` call (different names
   * per dataset are allowed; every dataset must be in one pool). The items may belong to other
   * zfs storages of the same pool. Falls back to one call per disk, all or none, like createMany.
   */
  async createAtomic(items: readonly AtomicSnapshotItem[], meta: SnapshotMeta): Promise<SnapshotInfo[]> {
    const snapshots = items.map((item) => {
      if (!(item.driver instanceof ZfsDriver) || item.driver.pool !== this.pool) {
        throw new StorageError('backend', `Disk ${item.disk.path} is not on zfs pool ${this.pool}`);
      }
      return item.driver.snapshotName(item.disk, item.id);
    });
    return this.snapshotAll(snapshots, meta);
  }

  /** `<disk dataset>@<id>`, both checked. */
  snapshotName(disk: DiskRef, id: string): string {
    const ds = this.diskDataset(disk);
    assertSnapshotId(id);
    return `${ds}@${id}`;
  }

  private get pool(): string {
    return this.dataset.split('/')[0]!;
  }

  private async snapshotAll(snapshots: readonly string[], meta: SnapshotMeta): Promise<SnapshotInfo[]> {
    assertSnapName(meta.name);
    const datasets = snapshots.map((s) => s.slice(0, s.indexOf('@')));
    if (new Set(datasets).size !== datasets.length) throw new StorageError('invalid_name', 'The same disk is listed twice');
    if (snapshots.length === 0) return [];
    const created = new Date();
    const props = [`${PROP_SNAPNAME}=${meta.name}`, `${PROP_CREATED}=${created.getTime()}`];
    const made: string[] = [];
    try {
      for (const { argv, snapshots: group } of snapshotCommands(this.zfsCapabilities, snapshots, props)) {
        await this.cmd.zfs(argv);
        made.push(...group);
      }
    } catch (err) {
      const undo = await Promise.allSettled(made.map((snap) => this.cmd.zfs(['zfs', 'destroy', snap])));
      const left = made.filter((_, i) => undo[i]?.status === 'rejected');
      if (left.length > 0 && err instanceof StorageError) {
        throw new StorageError(err.code, `${err.message}; could not remove ${left.join(', ')} again`, { cause: err });
      }
      throw err;
    }
    const sizes = await this.cmd.zfs(['zfs', 'get', '-Hp', '-o', 'name,value', this.zfsCapabilities.sizeProperty, ...snapshots]);
    const byName = new Map<string, string>();
    for (const line of sizes.stdout.split('\n')) {
      const [name = '', value = ''] = line.split('\t');
      byName.set(name, value);
    }
    return snapshots.map((snap) => ({ id: snap.slice(snap.indexOf('@') + 1), created, size: toSize(byName.get(snap)), name: meta.name }));
  }

  async destroy(disk: DiskRef, ids: readonly string[]): Promise<void> {
    const ds = this.diskDataset(disk);
    ids.forEach(assertSnapshotId);
    for (const argv of destroyCommands(this.zfsCapabilities, ds, [...new Set(ids)])) {
      await this.cmd.zfs(argv).catch((err: unknown) => {
        // Snapshots (or a whole disk) that are not there are already destroyed.
        if (!(err instanceof ZfsError && err.reason === 'missing')) throw err;
      });
    }
  }

  async rollback(disk: DiskRef, id: string): Promise<void> {
    const ds = this.diskDataset(disk);
    assertSnapshotId(id);
    await this.cmd.zfs(['zfs', 'rollback', '-r', `${ds}@${id}`]).catch((err: unknown) => this.cmd.whichMissing(err, ds));
  }

  async list(disk: DiskRef): Promise<SnapshotInfo[]> {
    const ds = this.diskDataset(disk);
    const caps = this.zfsCapabilities;
    const out = await this.cmd.zfs(listCommand(caps, ds));
    // In creation order (txg), each time is es:created where it is plausible, else zfs's whole
    // second, never earlier than the snapshot before it: a snapshot made outside esnap in the same
    // second as an esnap one must not appear to predate it.
    let floor = 0;
    return parseList(caps, ds, out.stdout)
      .sort((a, b) => a.txg - b.txg)
      .map((row) => {
        const seconds = row.creation * 1000;
        const precise = row.createdMs !== null && row.createdMs >= seconds - CREATED_SLACK_MS && row.createdMs < seconds + 1000;
        const ms = precise ? row.createdMs! : Math.min(Math.max(seconds, floor), seconds + 999);
        floor = Math.max(floor, ms);
        return { id: row.id, created: new Date(ms), size: row.size, name: row.snapname };
      })
      .sort((a, b) => a.created.getTime() - b.created.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async restore(src: DiskRef, id: string, dst: DiskRef): Promise<void> {
    const srcDs = this.diskDataset(src);
    const dstDs = this.diskDataset(dst);
    assertSnapshotId(id);
    if (srcDs === dstDs) throw new StorageError('backend', 'Restore into the disk itself: use rollback');
    const pipe = this.runner.pipe?.bind(this.runner);
    if (!pipe) throw new StorageError('backend', 'This command runner cannot pipe zfs send into zfs recv');
    await restoreInto(this.cmd, pipe, { srcDs, dstDs, id, src, dst, timeoutMs: this.restoreTimeoutMs });
  }

  /**
   * Replaces a disk by a native full stream (the restore of a dataset backup): `feed` runs the
   * `zfs recv` argv it is given with the stream on its stdin and throws when either side failed.
   * The disk's dataset is swapped as in restore() (zfs.restore.ts replaceDataset): old bytes or
   * new bytes after any crash, and the disk's snapshots go with the old dataset. `received` is the
   * snapshot the stream carries; `sizeBytes` of `dst`, when given, must be the disk's image size.
   */
  async receiveDisk(dst: DiskRef, received: string, feed: DatasetFeed): Promise<void> {
    const dstDs = this.diskDataset(dst);
    assertSnapshotId(received);
    const size = await replaceableSize(this.cmd, dstDs, dst);
    assertBackupFits(dst, size);
    await replaceDataset(this.cmd, dstDs, dst, { size, received, what: `backup ${received}`, receive: feed });
  }

  // ---- helpers ----

  /** `<storage>/<disk.path>`, checked against esnap's path rules and zfs's name rules. */
  private diskDataset(disk: DiskRef): string {
    assertDiskPath(disk.path);
    const ds = `${this.dataset}/${disk.path}`;
    if (ds.length > MAX_DATASET || disk.path.split('/').some((p) => ASIDE_RE.test(p))) {
      throw new StorageError('invalid_name', `Invalid disk path for zfs: ${JSON.stringify(disk.path)}`);
    }
    return ds;
  }
}

/** The user's name goes into a property printed one per line, tab-separated: no control characters. */
function assertSnapName(name: string): void {
  if (typeof name !== 'string' || name.length > 1000 || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new StorageError('invalid_name', `Invalid snapshot name: ${JSON.stringify(name)}`);
  }
}

function toSize(value: string | undefined): number | null {
  const n = Number(value);
  return value !== undefined && Number.isSafeInteger(n) ? n : null;
}
