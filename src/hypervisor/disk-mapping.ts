/**
 * Which esnap storage, if any, owns a libvirt disk. A disk is mapped only where its layout and
 * format are the driver's own, checked by asking the driver itself: the disk path the storage would
 * give that image must lead back to exactly the same file, in the same format, and the driver must
 * see the disk. So a raw file under a `file` root, a qcow2 image under a `qcow2` root and a
 * subvolume of its own holding `disk.img` under a `btrfs` root are mapped; a qcow2 under a `file`
 * root, a block device (zvol, LV), a network disk or anything outside every root is not, with the
 * reason the API shows. Snapshotting an unmapped disk could revert or copy more than that disk.
 *
 * A `zfs` storage's disks are datasets of their own under its dataset holding `disk.img` at the
 * top of their mountpoint, which only zfs knows: the driver names the disk (diskOfImage). A
 * dataset or subvolume holding other files beside `disk.img` is not mapped either: a rollback
 * would revert them too.
 */
import { open } from 'node:fs/promises';
import { readdir } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative, sep } from 'node:path';
import type { StorageDriver } from '../storage/driver.js';
import type { StorageConfig } from '../storage/drivers.js';
import type { DomainDisk } from './libvirt.domains.js';

export interface MappedDisk {
  readonly target: string;
  readonly source: string | null;
  /** Storage name and disk path on it, or null with the reason. */
  readonly storage: string | null;
  readonly path: string | null;
  readonly reason: string | null;
  /** Virtual size in MiB (0 when unknown). */
  readonly sizeMb: number;
}

export interface StorageEntry {
  readonly config: StorageConfig;
  readonly driver: StorageDriver;
}

function under(root: string, p: string): string | null {
  const rel = relative(root, p);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return null;
  return rel.split(sep).join('/');
}

/** Virtual size: the qcow2 header's size field (bytes 24–31), else the file's length. */
async function virtualSizeMb(path: string, format: 'raw' | 'qcow2'): Promise<number> {
  const fh = await open(path, 'r').catch(() => null);
  if (!fh) return 0;
  try {
    if (format === 'qcow2') {
      const buf = Buffer.alloc(32);
      await fh.read(buf, 0, 32, 0);
      if (buf.readUInt32BE(0) !== 0x514649fb) return 0;
      return Number(buf.readBigUInt64BE(24) / 1048576n);
    }
    return Math.floor((await fh.stat()).size / 1048576);
  } finally {
    await fh.close();
  }
}

export async function mapDisk(disk: DomainDisk, storages: readonly StorageEntry[]): Promise<MappedDisk> {
  const base = { target: disk.target, source: disk.source };
  const none = (reason: string): MappedDisk => ({ ...base, storage: null, path: null, reason, sizeMb: 0 });
  if (disk.source === null) return none(`${disk.type} disk without a local source`);
  if (disk.type !== 'file') return none(disk.type === 'block' ? 'block device' : `${disk.type} disk`);
  let mismatch: string | null = null;
  for (const s of storages) {
    const root = s.config.root;
    let candidates: string[];
    if (s.driver.diskOfImage) {
      const path = await s.driver.diskOfImage(disk.source).catch(() => null);
      candidates = path === null ? [] : [path];
    } else if (root !== undefined) {
      // file/qcow2 disks are the image itself; btrfs disks are the subvolume holding disk.img.
      candidates = [under(root, disk.source), under(root, dirname(disk.source))].filter((c): c is string => c !== null);
    } else continue;
    for (const path of candidates) {
      let image: { path: string; format: 'raw' | 'qcow2' };
      try {
        image = await s.driver.imageOf({ path });
      } catch {
        continue; // not a disk path this driver accepts
      }
      if (image.path !== disk.source) continue;
      if ((disk.format ?? 'raw') !== image.format) {
        mismatch = `${disk.format ?? 'raw'} image on ${s.config.driver} storage ${s.config.name}`;
        continue;
      }
      if (!(await s.driver.diskExists({ path }).catch(() => false))) {
        mismatch = `not a disk of ${s.config.driver} storage ${s.config.name}`;
        continue;
      }
      if (s.config.driver === 'zfs' || s.config.driver === 'btrfs') {
        // The reason is shown to every reader of the disk: it names no other file.
        if (await hasOtherFiles(dirname(image.path), basename(image.path))) {
          mismatch = `${s.config.driver === 'zfs' ? 'dataset' : 'subvolume'} holds other files beside ${basename(image.path)}`;
          continue;
        }
      }
      return { ...base, storage: s.config.name, path, reason: null, sizeMb: await virtualSizeMb(image.path, image.format) };
    }
  }
  return none(mismatch ?? 'not under an esnap storage');
}

/** Files beside `image` in its dataset or subvolume (a rollback reverts them too); folders are left out. */
async function hasOtherFiles(folder: string, image: string): Promise<boolean> {
  const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
  return entries.some((e) => e.name !== image && !e.isDirectory());
}
