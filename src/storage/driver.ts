/**
 * The storage driver interface: one implementation per backend (`file`, later `qcow2`, `zfs`,
 * `btrfs`). A driver works on one disk of one node storage and never sees HTTP or the database.
 *
 * Snapshot ids are the backend names `es-<n>` (manual) and `as-<n>` (automatic); the user-facing
 * name travels in `meta.name` and is stored on the backend where it can be (ZFS `es:snapname`,
 * a side-car file for `file`).
 */

/** A disk as the agent sees it: where it lives on the storage, and its size when known. */
export interface DiskRef {
  /** Path relative to the storage root (file, qcow2, btrfs) or dataset below the storage dataset (zfs). */
  readonly path: string;
  /** Size in bytes, used when the disk is created. */
  readonly sizeBytes?: number;
  /** QMP socket of a running VM (qcow2 live snapshots), when the VM has one. */
  readonly qmpSocket?: string | null;
  /** uuid of the libvirt domain the disk belongs to (ESNAP_HYPERVISOR=libvirt): its monitor is libvirt's. */
  readonly libvirtDomain?: string | null;
}

export interface SnapshotMeta {
  /** The user-visible snapshot name (validated before it gets here). */
  readonly name: string;
}

export interface SnapshotInfo {
  /** Backend id: `es-<n>` or `as-<n>` (other ids may exist on storage and are listed too). */
  readonly id: string;
  readonly created: Date;
  /** Bytes, as `shared/design.md` defines per driver; null when the backend cannot tell. */
  readonly size: number | null;
  /** The user-visible name stored on the backend, when it has one. */
  readonly name?: string | null;
}

export interface StorageStats {
  readonly size: number;
  readonly free: number;
}

export interface DriverCapabilities {
  /** Whether snapshots newer than the rollback target survive a rollback. */
  readonly rollbackKeepsNewer: boolean;
  /** Whether destroy of several snapshots is one backend operation. */
  readonly batchDestroy: boolean;
}

export interface StorageDriver {
  readonly kind: string;
  readonly capabilities: DriverCapabilities;
  /** Make sure the storage itself is usable (folders exist, dataset present). */
  init(): Promise<void>;
  /** Size and free bytes of the storage. */
  stats(): Promise<StorageStats>;
  /** Whether the disk's image exists. */
  diskExists(disk: DiskRef): Promise<boolean>;
  /**
   * Why the disk's image cannot be trusted (missing, shorter than `disk.sizeBytes`, or, with
   * `thorough`, metadata the format's own check finds cut off), or null when it is whole. The
   * server flags such a disk damaged and refuses new snapshots of it (src/vms/disk.damage.ts).
   */
  imageDamage(disk: DiskRef, opts?: { readonly thorough?: boolean }): Promise<string | null>;
  /** Create the disk image (a sparse file for `file`) of `disk.sizeBytes`; no-op when it exists. */
  createDisk(disk: DiskRef): Promise<void>;
  /** Remove the disk image and every snapshot of it. */
  deleteDisk(disk: DiskRef): Promise<void>;
  create(disk: DiskRef, id: string, meta: SnapshotMeta): Promise<SnapshotInfo>;
  /** Destroy several snapshots; ids that do not exist are ignored. */
  destroy(disk: DiskRef, ids: readonly string[]): Promise<void>;
  rollback(disk: DiskRef, id: string): Promise<void>;
  list(disk: DiskRef): Promise<SnapshotInfo[]>;
  /** Write snapshot `id` of `src` into `dst` (a disk of the same size on the same storage). */
  restore(src: DiskRef, id: string, dst: DiskRef): Promise<void>;
  /**
   * The image file a hypervisor would open for this disk, for the "is the VM really stopped"
   * check before a rollback or restore. Path validated like every other operation's.
   */
  imageOf(disk: DiskRef): Promise<{ readonly path: string; readonly format: 'raw' | 'qcow2' }>;
  /**
   * The other way round, for drivers whose disk paths are not folders under a root (zfs): the
   * disk path whose image `file` is, or null when it is none of this storage's disks. Optional;
   * without it the hypervisor matches images under `root` (src/hypervisor/disk-mapping.ts).
   */
  diskOfImage?(file: string): Promise<string | null>;
}

/** Errors a driver raises, translated once from the backend's own error text or errno. */
export type StorageErrorCode =
  | 'disk_missing'
  | 'snapshot_missing'
  | 'snapshot_exists'
  | 'busy'
  | 'no_space'
  | 'invalid_name'
  | 'size_mismatch'
  | 'backend';

export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    readonly code: StorageErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Snapshot ids the drivers accept: what esnap makes, nothing a shell or a path could misread. */
/** `is-<n>`: the snapshot a backup reads (n: the backup's id), never listed as a snapshot of the disk. */
export const SNAPSHOT_ID_RE = /^[aei]s-[0-9]{1,18}$/;

/** Disk paths relative to a storage: plain segments, no `..`, no leading slash, no dot-folders. */
export const DISK_PATH_RE = /^(?!.*(?:^|\/)\.)[A-Za-z0-9_][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;

export function assertSnapshotId(id: string): void {
  if (!SNAPSHOT_ID_RE.test(id)) throw new StorageError('invalid_name', `Invalid snapshot id: ${JSON.stringify(id)}`);
}

export function assertDiskPath(path: string): void {
  if (path.length > 255 || !DISK_PATH_RE.test(path)) {
    throw new StorageError('invalid_name', `Invalid disk path: ${JSON.stringify(path)}`);
  }
}

/** Damage reasons the drivers report (stored as the disk's `damaged` text). */
export const IMAGE_MISSING = 'image is missing';
export const IMAGE_SHORT = 'image is shorter than the disk';
export const IMAGE_CORRUPT = 'image metadata is cut off or corrupt';

/** A raw image's damage from its stat (null: no such file). */
export function rawImageDamage(st: { size: number; isFile(): boolean } | null, disk: DiskRef): string | null {
  if (!st?.isFile()) return IMAGE_MISSING;
  if (disk.sizeBytes !== undefined && st.size < disk.sizeBytes) return IMAGE_SHORT;
  return null;
}
