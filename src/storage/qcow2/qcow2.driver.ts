/**
 * The `qcow2` driver: a disk is the qcow2 image `<root>/<disk.path>`; a snapshot is an internal
 * qcow2 snapshot whose tag is the snapshot id; the user-visible name lives in the disk's snapshot
 * index (qcow2.names.ts). Sizes are null: qcow2 does not say what one internal snapshot costs.
 *
 * Two paths, chosen per call:
 * - live: the VM's QMP socket answers and its QEMU has the image attached: create and destroy go
 *   through QEMU (qcow2.live.ts). Rollback is refused (`VM is not stopped`).
 * - offline: otherwise, qemu-img. Writes never use -U, so qemu-img takes QEMU's image lock: a VM
 *   holding the image without a usable QMP socket makes them fail cleanly with `busy` instead of
 *   corrupting the image. Listing reads with -U (the snapshot table is written synchronously).
 *
 * qemu-img accepts duplicate tags (a second `-c es-1` makes another snapshot `es-1`), so create
 * checks uniqueness itself; destroy removes every snapshot carrying a destroyed tag.
 *
 * Rollback (`snapshot -a`) and restore (`convert -n` into the existing target) keep every internal
 * snapshot of the target: rollbackKeepsNewer. Rollback switches the active L1 table in one small
 * write. A restore rewrites the active layer, so it is bracketed by an undo snapshot and journaled
 * (qcow2.restore.ts): killed or failed half way, the target gets its old content back.
 *
 * Destroy of several snapshots on a stopped VM runs in ONE qemu-storage-daemon process (QMP on
 * stdin) when that program exists (Debian: qemu-system-common); batchDestroy says whether it does,
 * detected by init(). A create on a stopped VM uses it too: QEMU refuses a duplicate tag itself,
 * so one process does what `qemu-img info` + `qemu-img snapshot -c` did in two. A running VM's
 * snapshots are created and destroyed over its one QMP connection.
 */
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { mkdirSync, rmdirSync } from 'node:fs';
import { link, mkdir, realpath, rmdir, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import {
  assertDiskPath,
  assertSnapshotId,
  IMAGE_CORRUPT,
  IMAGE_MISSING,
  IMAGE_SHORT,
  StorageError,
  type DiskRef,
  type DriverCapabilities,
  type SnapshotInfo,
  type SnapshotMeta,
  type StorageDriver,
  type StorageStats,
} from '../driver.js';
import { code, diskPathTaken, fail, isPathTaken, removeEmptyParents, rootStats } from '../fs-root.js';
import { assertDiskNotInUse } from '../in-use.js';
import type { CommandRunner } from '../runner.js';
import { qemuToolError, qmpError } from './qcow2.errors.js';
import { argv, QEMU_IMG, QEMU_STORAGE_DAEMON, SETPRIV, type QcowInfo } from './qcow2.image.js';
import { locateImage, openLive, type LibvirtQuickSnapshot, type LiveDisk, type QemuMonitor } from './qcow2.live.js';
import { appendIndex, compactIfLarge, undoAppend, type AppendResult } from '../snapshot-index.js';
import { META_DIR, migrateNames, namesDir, readNames, removeNames } from './qcow2.names.js';
import { Journal } from '../journal.js';
import { recoverRestores, restoreWithUndo, UNDO_TAG, type QcowTools } from './qcow2.restore.js';
import { QemuCommands } from './qcow2.commands.js';
import { realpathOfExisting, realpathOrFail, statOrNull } from './qcow2.fs.js';
import { createReadStream } from 'node:fs';
import { readdir, stat as statAsync } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import { asideWritable, type DiskWritable, type SnapshotReadable } from '../stream.js';

/** Raw copies of a snapshot a backup streams (`.esnap/stream-<hex>.raw`); init() removes leftovers. */
const STREAM_TEMP_RE = /^stream-[0-9a-f]{12}\.raw$/;

export interface Qcow2DriverOptions {
  readonly root: string;
  readonly runner: CommandRunner;
  /** Longest a restore (a full copy of the disk) may take. */
  readonly copyTimeoutMs?: number;
  /** Limit for one metadata command (qemu-img snapshot/info, one QMP command). */
  readonly commandTimeoutMs?: number;
  /** Limit for reaching a VM's QMP socket (connect, greeting, capabilities). */
  readonly qmpTimeoutMs?: number;
  /** The monitor of a running libvirt domain, or null (src/hypervisor/libvirt.monitor.ts). */
  readonly libvirtMonitor?: (uuid: string) => Promise<QemuMonitor | null>;
  /** A live snapshot in one virsh run where the domain's device for the image is known. */
  readonly libvirtSnapshot?: LibvirtQuickSnapshot;
}

const CAPS_SINGLE: DriverCapabilities = Object.freeze({ rollbackKeepsNewer: true, batchDestroy: false });
const CAPS_BATCH: DriverCapabilities = Object.freeze({ rollbackKeepsNewer: true, batchDestroy: true });

interface DiskPaths {
  readonly image: string;
  readonly meta: string;
}

export class Qcow2Driver implements StorageDriver {
  readonly kind = 'qcow2';
  private readonly root: string;
  private readonly runner: CommandRunner;
  private readonly copyTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private readonly qmpTimeoutMs: number;
  private readonly cmd: QemuCommands;
  private realRoot: string | undefined;
  /** Resolved by init(): whether qemu-storage-daemon runs here. */
  private daemon = false;
  /** Restores in flight (qcow2.restore.ts); `.esnap/.journal` is no disk's names folder. */
  private readonly journal: Journal;
  private readonly tools: QcowTools = {
    tool: (args, what, timeoutMs) => this.cmd.tool(args, what, timeoutMs),
    info: (image) => this.cmd.info(image, { path: image }),
  };

  constructor(opts: Qcow2DriverOptions) {
    this.root = resolve(opts.root);
    this.runner = opts.runner;
    this.copyTimeoutMs = opts.copyTimeoutMs ?? 6 * 3600_000;
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 10 * 60_000;
    // Short: QEMU greets at once, and a silent socket must not hold the node's agent slot for long.
    this.qmpTimeoutMs = opts.qmpTimeoutMs ?? 3_000;
    this.cmd = new QemuCommands(this.runner, this.commandTimeoutMs);
    this.journal = new Journal(join(this.root, META_DIR, '.journal'));
    this.libvirtMonitor = opts.libvirtMonitor;
    this.libvirtSnapshot = opts.libvirtSnapshot;
  }

  private readonly libvirtSnapshot: LibvirtQuickSnapshot | undefined;

  private readonly libvirtMonitor: ((uuid: string) => Promise<QemuMonitor | null>) | undefined;

  get capabilities(): DriverCapabilities {
    return this.daemon ? CAPS_BATCH : CAPS_SINGLE;
  }

  async init(): Promise<void> {
    await mkdir(join(this.root, META_DIR), { recursive: true }).catch((err: unknown) => fail(err, 'cannot create the storage folders'));
    this.realRoot = await realpath(this.root).catch((err: unknown) => fail(err, `storage root ${this.root} is not usable`));
    await migrateNames(join(this.root, META_DIR)).catch((err: unknown) => fail(err, 'cannot clean up after an earlier crash'));
    const img = await this.runner.run([QEMU_IMG, '--version'], { timeoutMs: 30_000 }).catch((err: unknown) => fail(err, 'qemu-img cannot run (apt-get install qemu-utils)'));
    if (img.code !== 0) throw new StorageError('backend', `qemu-img --version failed: ${img.stderr.trim()}`);
    const daemon = await this.runner.run([QEMU_STORAGE_DAEMON, '--version'], { timeoutMs: 30_000 }).catch(() => null);
    this.daemon = daemon?.code === 0;
    if (this.daemon) {
      const deathsig = [SETPRIV, '--pdeathsig', 'KILL', '--'];
      const guarded = await this.runner.run([...deathsig, QEMU_STORAGE_DAEMON, '--version'], { timeoutMs: 30_000 }).catch(() => null);
      if (guarded?.code === 0) this.cmd.daemonPrefix = deathsig;
    }
    for (const name of await readdir(join(this.root, META_DIR)).catch(() => [] as string[])) {
      if (STREAM_TEMP_RE.test(name)) await unlink(join(this.root, META_DIR, name)).catch(() => undefined);
    }
    // Before the disks take any task (the agent ends a killed predecessor's qemu-img first).
    await recoverRestores(this.tools, this.root, this.journal).catch((err: unknown) => fail(err, 'cannot undo a restore cut off by a crash'));
  }

  async stats(): Promise<StorageStats> {
    return rootStats(this.root);
  }

  async imageOf(disk: DiskRef): Promise<{ path: string; format: 'qcow2' }> {
    return { path: this.paths(disk).image, format: 'qcow2' };
  }

  async diskExists(disk: DiskRef): Promise<boolean> {
    assertDiskPath(disk.path);
    const { image } = this.paths(disk);
    return statOrNull(image)?.isFile() ?? false;
  }

  /**
   * Missing, unreadable or smaller than the disk; `thorough` adds `qemu-img check`, which finds
   * clusters past the end of a truncated file. A running VM's lock makes the check fail: then only
   * the header counts (the image is in use, so it cannot be missing).
   */
  async imageDamage(disk: DiskRef, opts: { thorough?: boolean } = {}): Promise<string | null> {
    assertDiskPath(disk.path);
    const { image } = this.paths(disk);
    if (!statOrNull(image)?.isFile()) return IMAGE_MISSING;
    const info = await this.cmd.info(image, disk).catch((err: unknown) => {
      if (err instanceof StorageError && err.code === 'busy') return 'busy' as const;
      return null;
    });
    if (info === null) return IMAGE_CORRUPT;
    if (info !== 'busy' && disk.sizeBytes !== undefined && info.virtualSize < disk.sizeBytes) return IMAGE_SHORT;
    if (!opts.thorough) return null;
    const r = await this.cmd.run(argv.check(image), `cannot check disk ${disk.path}`, this.copyTimeoutMs);
    // Exit 2: corruptions; 3: only leaked clusters (harmless, e.g. after a killed qemu-img).
    return r.code === 2 && /"corruptions":\s*[1-9]/.test(r.stdout) ? IMAGE_CORRUPT : null;
  }

  async createDisk(disk: DiskRef): Promise<void> {
    assertDiskPath(disk.path);
    const size = disk.sizeBytes;
    // qemu-img rounds a size up to 512 bytes; a silently larger disk would break restore's size check.
    if (size === undefined || !Number.isSafeInteger(size) || size < 0 || size % 512 !== 0) {
      throw new StorageError('backend', `createDisk needs a whole, non-negative sizeBytes that is a multiple of 512, got ${String(size)}`);
    }
    const { image, meta } = this.paths(disk);
    if (statOrNull(image)) return this.requireFile(image, disk);
    // Made under a temporary name and linked into place: qemu-img create would truncate an image
    // that appeared meanwhile, link() never replaces one. The temporary sits next to the image (the
    // folder may be another filesystem than the root); its dot name is no valid disk path. Only a
    // crash right here can leave it behind, and nothing ever reads it.
    const tmp = join(dirname(image), `.${basename(image)}.tmp-${randomBytes(6).toString('hex')}`);
    try {
      for (let attempt = 0; ; attempt++) {
        await mkdir(dirname(image), { recursive: true });
        try {
          await this.cmd.tool(argv.create(tmp, size), `cannot create disk ${disk.path}`);
          break;
        } catch (err) {
          // A delete of another disk removed the folder, empty until now (removeEmptyParents): again, once.
          if (attempt > 0 || statOrNull(dirname(image))) throw err;
        }
      }
      await link(tmp, image).then(
        () => removeNames(meta), // names of an earlier disk of that path must not come back
        (err: unknown) => {
          if (code(err) !== 'EEXIST') throw err;
        },
      );
    } catch (err) {
      if (isPathTaken(err)) throw diskPathTaken(disk.path, err);
      fail(err, `cannot create disk ${disk.path}`);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    this.requireFile(image, disk);
  }

  async deleteDisk(disk: DiskRef): Promise<void> {
    assertDiskPath(disk.path);
    const { image, meta } = this.paths(disk);
    try {
      // Image first: its snapshots go with it. A crash before the names go leaves only labels
      // that createDisk clears.
      await unlink(image).catch((err: unknown) => {
        if (!['ENOENT', 'ENOTDIR', 'EISDIR'].includes(code(err) ?? '')) throw err;
      });
      await removeEmptyParents(image, this.root);
      await removeNames(meta);
      await rmdir(meta).catch(() => undefined); // holds other disks' folders, or never existed
      await removeEmptyParents(meta, join(this.root, META_DIR));
    } catch (err) {
      fail(err, `cannot delete disk ${disk.path}`);
    }
  }

  async create(disk: DiskRef, id: string, meta: SnapshotMeta): Promise<SnapshotInfo> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const p = this.paths(disk);
    this.requireDisk(p.image, disk);
    if (disk.libvirtDomain && this.libvirtSnapshot) {
      const quick = await this.createQuickLibvirt(disk, p, id, meta, this.libvirtSnapshot);
      if (quick) return quick;
    }
    const live = await this.live(disk, p.image);
    try {
      // Uniqueness (qemu-img accepts a duplicate tag): QEMU checks it itself in the live path and in
      // qemu-storage-daemon, atomically; only plain qemu-img needs the info read first.
      const existing = live ? live.snapshots : this.daemon ? [] : (await this.cmd.info(p.image, disk)).snapshots;
      if (existing.some((s) => s.name === id)) throw new StorageError('snapshot_exists', `Snapshot ${id} of ${disk.path} exists`);
      const created = new Date();
      const what = `cannot create snapshot ${id} of ${disk.path}`;
      const index = this.appendCreateIndex(p, id, meta, created, what);
      try {
        if (live) await live.qmp.execute('blockdev-snapshot-internal-sync', { device: live.device, name: id }, { timeoutMs: this.commandTimeoutMs });
        else if (this.daemon) {
          const [refused] = await this.cmd.daemonBatch(p.image, [{ execute: 'blockdev-snapshot-internal-sync', name: id }], what);
          if (refused) throw qemuToolError({ code: 1, stderr: refused }, what);
        }
        else await this.cmd.tool(argv.snapshotCreate(p.image, id), what);
      } catch (err) {
        this.undoCreateIndex(p.meta, index);
        throw live ? qmpError(err, `${what} in the running VM`) : err;
      }
      return { id, created, size: null, name: meta.name };
    } finally {
      await live?.qmp.close();
    }
  }

  /**
   * A running libvirt domain's snapshot in one virsh run (the device known from an earlier one;
   * QEMU itself refuses a duplicate name). Null when that does not apply: the usual path runs.
   */
  private async createQuickLibvirt(disk: DiskRef, p: DiskPaths, id: string, meta: SnapshotMeta, quick: LibvirtQuickSnapshot): Promise<SnapshotInfo | null> {
    const created = new Date();
    const what = `cannot create snapshot ${id} of ${disk.path}`;
    const index = this.appendCreateIndex(p, id, meta, created, what);
    let outcome: 'done' | 'offline' | 'unknown';
    try {
      outcome = await quick(disk.libvirtDomain!, p.image, id, this.commandTimeoutMs);
    } catch (err) {
      this.undoCreateIndex(p.meta, index);
      throw qmpError(err, `${what} in the running VM`);
    }
    if (outcome === 'done') return { id, created, size: null, name: meta.name };
    this.undoCreateIndex(p.meta, index);
    return null;
  }

  /**
   * The name goes into the index BEFORE the snapshot, as one unsynced append (an fsync here cost a
   * third of a live create): a killed process never loses it, a machine crash may (the snapshot is
   * then listed with name null). A failed snapshot takes the append back (undoCreateIndex).
   */
  private appendCreateIndex(p: DiskPaths, id: string, meta: SnapshotMeta, created: Date, what: string): { appended: AppendResult; madeDir: string | undefined } {
    try {
      const madeDir = mkdirSync(p.meta, { recursive: true });
      return { appended: appendIndex(p.meta, [{ id, name: meta.name, created }]), madeDir };
    } catch (err) {
      fail(err, `${what}: cannot store its name`);
    }
  }

  private undoCreateIndex(meta: string, { appended, madeDir }: { appended: AppendResult; madeDir: string | undefined }): void {
    try {
      undoAppend(meta, appended);
      // Folders this create made go too: a failed create leaves the storage as it was.
      for (let dir = meta; madeDir !== undefined && dir.startsWith(madeDir); dir = dirname(dir)) rmdirSync(dir);
    } catch {
      /* a record without a tag is never listed */
    }
  }

  async destroy(disk: DiskRef, ids: readonly string[]): Promise<void> {
    assertDiskPath(disk.path);
    ids.forEach(assertSnapshotId);
    if (ids.length === 0) return;
    const p = this.paths(disk);
    this.requireDisk(p.image, disk);
    const wanted = new Set(ids);
    const live = await this.live(disk, p.image);
    let remaining: Set<string>;
    let doomed: string[];
    try {
      const existing = live ? live.snapshots : (await this.cmd.info(p.image, disk)).snapshots;
      // One entry per snapshot, not per tag: duplicate tags made outside esnap all go.
      doomed = existing.map((s) => s.name).filter((n) => wanted.has(n));
      remaining = new Set(existing.map((s) => s.name).filter((n) => !wanted.has(n)));
      if (live) await this.destroyLive(live, doomed, disk);
      else if (doomed.length > 1 && this.daemon) await this.cmd.destroyBatch(p.image, doomed, disk);
      else for (const id of doomed) await this.cmd.tool(argv.snapshotDelete(p.image, id), `cannot destroy snapshot ${id} of ${disk.path}`);
    } finally {
      await live?.qmp.close();
    }
    // Labels only: a failure here leaves names that no tag carries, which are never listed.
    try {
      const { size } = appendIndex(p.meta, [...new Set(doomed)].map((id) => ({ id, deleted: true as const })));
      if (size > 0) await compactIfLarge(p.meta, size, (id) => remaining.has(id));
    } catch {
      /* see above */
    }
  }

  async rollback(disk: DiskRef, id: string): Promise<void> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const { image } = this.paths(disk);
    this.requireDisk(image, disk);
    await assertDiskNotInUse({ imagePath: image, format: 'qcow2', qmpSocket: disk.qmpSocket, runner: this.runner, qmpTimeoutMs: this.qmpTimeoutMs });
    await this.requireSnapshot(await this.cmd.info(image, disk), id, disk);
    await this.cmd.tool(argv.snapshotApply(image, id), `cannot roll ${disk.path} back to ${id}`);
  }

  /**
   * A snapshot's raw image for a backup (src/storage/stream.ts). qemu-img cannot write raw to a
   * pipe, so the internal snapshot is converted into a sparse raw file under `.esnap/` first (room
   * for its allocated bytes is needed meanwhile), streamed, and removed.
   */
  async readSnapshotStream(disk: DiskRef, id: string): Promise<SnapshotReadable> {
    assertDiskPath(disk.path);
    assertSnapshotId(id);
    const { image } = this.paths(disk);
    this.requireDisk(image, disk);
    await this.requireSnapshot(await this.cmd.info(image, disk), id, disk);
    const temp = join(this.root, META_DIR, `stream-${randomBytes(6).toString('hex')}.raw`);
    try {
      await this.cmd.tool([QEMU_IMG, 'convert', '-U', '-O', 'raw', '-l', `snapshot.name=${id}`, image, temp], `cannot read snapshot ${id} of ${disk.path}`, this.copyTimeoutMs);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    const size = (await statAsync(temp)).size;
    const stream = createReadStream(temp, { highWaterMark: 4 * 1024 * 1024 });
    const ended = finished(stream)
      .catch((err: unknown) => fail(err, `cannot read snapshot ${id} of ${disk.path}`))
      .finally(() => unlink(temp).catch(() => undefined));
    ended.catch(() => undefined);
    // A stream destroyed before its end (the backup failed) removes the copy too.
    stream.once('close', () => void unlink(temp).catch(() => undefined));
    return { stream, size, done: () => ended };
  }

  /**
   * A restore stream (src/storage/stream.ts): the raw bytes go to a file under `.esnap/` first
   * (room for the disk's size is needed meanwhile; a crash leaves it, and init() removes it), and
   * commit() writes them into the disk's active layer like a snapshot restore: bracketed by the
   * undo snapshot and journaled (qcow2.restore.ts), so a kill at any instant leaves the old
   * content or the new. The disk's own internal snapshots stay.
   */
  async openDiskWrite(disk: DiskRef): Promise<DiskWritable> {
    assertDiskPath(disk.path);
    const { image } = this.paths(disk);
    this.requireDisk(image, disk);
    await assertDiskNotInUse({ imagePath: image, format: 'qcow2', qmpSocket: disk.qmpSocket, runner: this.runner, qmpTimeoutMs: this.qmpTimeoutMs });
    const size = (await this.cmd.info(image, disk)).virtualSize;
    const temp = join(this.root, META_DIR, `stream-${randomBytes(6).toString('hex')}.raw`);
    return asideWritable({
      temp,
      size,
      disk: disk.path,
      toError: fail,
      switchIn: async () => {
        try {
          await restoreWithUndo(this.tools, { root: this.root, journal: this.journal, source: temp, id: null, target: image, what: `cannot restore a backup into ${disk.path}`, copyTimeoutMs: this.copyTimeoutMs });
        } finally {
          await unlink(temp).catch(() => undefined);
        }
      },
    });
  }

  async restore(src: DiskRef, id: string, dst: DiskRef): Promise<void> {
    assertDiskPath(src.path);
    assertDiskPath(dst.path);
    assertSnapshotId(id);
    const from = this.paths(src);
    const to = this.paths(dst);
    this.requireDisk(from.image, src);
    await assertDiskNotInUse({ imagePath: to.image, format: 'qcow2', qmpSocket: dst.qmpSocket, runner: this.runner, qmpTimeoutMs: this.qmpTimeoutMs });
    const srcInfo = await this.cmd.info(from.image, src);
    await this.requireSnapshot(srcInfo, id, src);
    this.requireDisk(to.image, dst);
    if ((await realpath(from.image)) === (await realpath(to.image))) {
      // convert -U -n from an image into itself would read what it overwrites.
      await this.cmd.tool(argv.snapshotApply(to.image, id), `cannot roll ${dst.path} back to ${id}`);
      return;
    }
    const dstInfo = await this.cmd.info(to.image, dst);
    if (dstInfo.virtualSize !== srcInfo.virtualSize) {
      throw new StorageError(
        'size_mismatch',
        `Disk ${dst.path} has ${dstInfo.virtualSize} bytes, snapshot ${id} of ${src.path} has ${srcInfo.virtualSize}`,
      );
    }
    const what = `cannot restore ${id} of ${src.path} into ${dst.path}`;
    await restoreWithUndo(this.tools, { root: this.root, journal: this.journal, source: from.image, id, target: to.image, what, copyTimeoutMs: this.copyTimeoutMs });
  }

  async list(disk: DiskRef): Promise<SnapshotInfo[]> {
    assertDiskPath(disk.path);
    const p = this.paths(disk);
    this.requireDisk(p.image, disk);
    const info = await this.cmd.info(p.image, disk);
    const names = await readNames(p.meta);
    return info.snapshots
      .filter((s) => s.name !== UNDO_TAG) // a restore's undo point is not a snapshot of the disk
      .map((s): SnapshotInfo => ({ id: s.name, created: s.created, size: null, name: names.get(s.name) ?? null }))
      .sort((a, b) => a.created.getTime() - b.created.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The live path when the VM's QEMU answers and has the image; null for the offline path. */
  private async live(disk: DiskRef, image: string): Promise<LiveDisk | null> {
    if (disk.libvirtDomain && this.libvirtMonitor) {
      const mon = await this.libvirtMonitor(disk.libvirtDomain);
      return mon ? locateImage(mon, image, this.qmpTimeoutMs, `domain ${disk.libvirtDomain}`) : null;
    }
    if (!disk.qmpSocket) return null;
    return openLive(disk.qmpSocket, image, this.qmpTimeoutMs);
  }

  private async destroyLive(live: LiveDisk, ids: readonly string[], disk: DiskRef): Promise<void> {
    for (const id of ids) {
      try {
        await live.qmp.execute('blockdev-snapshot-delete-internal-sync', { device: live.device, name: id }, { timeoutMs: this.commandTimeoutMs });
      } catch (err) {
        const e = qmpError(err, `cannot destroy snapshot ${id} of ${disk.path} in the running VM`);
        if (e.code !== 'snapshot_missing') throw e; // gone meanwhile: what destroy wanted
      }
    }
  }

  /**
   * Resolves a validated disk path; neither the image nor its names folder may leave the root.
   * Synchronous (realpath(3) and stat on cached entries): their thread-pool round trips were a
   * visible part of a live create, which takes a few milliseconds.
   */
  private paths(disk: DiskRef): DiskPaths {
    const image = join(this.root, disk.path);
    const meta = namesDir(this.root, disk.path);
    this.realRoot ??= realpathOrFail(this.root, `storage root ${this.root} is not usable`);
    for (const p of [image, meta]) {
      const real = realpathOfExisting(p);
      if (real !== this.realRoot && !real.startsWith(this.realRoot + sep)) {
        throw new StorageError('invalid_name', `Disk path ${JSON.stringify(disk.path)} leads outside the storage root`);
      }
    }
    return { image, meta };
  }

  private requireDisk(image: string, disk: DiskRef): Stats {
    const st = statOrNull(image);
    if (!st?.isFile()) throw new StorageError('disk_missing', `Disk ${disk.path} does not exist`);
    return st;
  }

  private requireFile(image: string, disk: DiskRef): void {
    if (!statOrNull(image)?.isFile()) throw diskPathTaken(disk.path);
  }

  private requireSnapshot(info: QcowInfo, id: string, disk: DiskRef): Promise<void> {
    if (info.snapshots.some((s) => s.name === id)) return Promise.resolve();
    return Promise.reject(new StorageError('snapshot_missing', `Snapshot ${id} of ${disk.path} does not exist`));
  }
}
