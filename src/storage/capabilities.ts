/**
 * What the server needs to know about a driver without talking to it: whether rollback keeps
 * newer snapshots. One table, looked up by the storage's driver name. Below it, the capability
 * of taking several disks' snapshots in one atomic operation, and the pure plan that uses it.
 */
import type { DiskRef, SnapshotInfo, SnapshotMeta, StorageDriver } from './driver.js';

const ROLLBACK_KEEPS_NEWER: Readonly<Record<string, boolean>> = {
  file: true,
  qcow2: true,
  btrfs: true,
  zfs: false,
};

export function rollbackKeepsNewer(driver: string): boolean {
  return ROLLBACK_KEEPS_NEWER[driver] ?? true;
}

/**
 * Snapshots of several disks in ONE backend operation, all or none at one instant (OpenZFS:
 * `zfs snapshot pool/a@es-1 pool/b@es-2`, several datasets of one pool). A driver that can do it
 * implements this next to StorageDriver; whether it can for a given disk is its capability,
 * resolved when it was initialised (ZFS: the detected multiSnapshot).
 */
export interface AtomicSnapshots {
  /**
   * Disks whose drivers answer the same key (not null) can be snapshotted by one createAtomic
   * call of any of those drivers; null: this disk is snapshotted on its own.
   */
  atomicGroup(disk: DiskRef): string | null;
  /** The snapshots of `items`, in their order; on failure none of them exists. */
  createAtomic(items: readonly AtomicSnapshotItem[], meta: SnapshotMeta): Promise<SnapshotInfo[]>;
}

export interface AtomicSnapshotItem {
  readonly driver: StorageDriver;
  readonly disk: DiskRef;
  readonly id: string;
}

export function atomicSnapshots(driver: StorageDriver): (StorageDriver & AtomicSnapshots) | null {
  const d = driver as Partial<AtomicSnapshots> & StorageDriver;
  return typeof d.atomicGroup === 'function' && typeof d.createAtomic === 'function' ? (d as StorageDriver & AtomicSnapshots) : null;
}

/**
 * The plan of a multi-disk create: items (by index) grouped so that each group is one backend
 * operation. Items with the same non-null key form one group, placed where its first item is;
 * an item with a null key is a group of its own. Pure: the keys come from the drivers' capabilities.
 *
 * Example:
 *   planAtomicGroups(['zfs:tank', null, 'zfs:tank', 'zfs:other']) // [[0, 2], [1], [3]]
 */
export function planAtomicGroups(keys: readonly (string | null)[]): number[][] {
  const groups: number[][] = [];
  const byKey = new Map<string, number[]>();
  keys.forEach((key, i) => {
    if (key === null) return void groups.push([i]);
    const group = byKey.get(key);
    if (group) return void group.push(i);
    const fresh = [i];
    byKey.set(key, fresh);
    groups.push(fresh);
  });
  return groups;
}
