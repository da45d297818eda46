/**
 * Streaming a disk's bytes out of a snapshot and into a disk, per driver: what backups read from
 * a source disk and what a restore writes into a target disk (src/backups/). A driver that can
 * stream implements `StreamingDriver` beside `StorageDriver`; `streamingOf` tells which can.
 *
 * Reads give the snapshot's raw image, from offset 0 to its end. Writes are crash-safe as the
 * driver's own rollback is: the bytes go aside, and `commit()` switches them in atomically (the
 * disk holds its old bytes or all the new ones, never a mix); `abort()` leaves the old bytes.
 * The same seam is carried between nodes by the SSH transport (src/backups/transfer.ts).
 */
import type { Readable, Writable } from 'node:stream';
import type { DiskRef, StorageDriver } from './driver.js';

export interface SnapshotReadable {
  /** The snapshot's raw image bytes. */
  readonly stream: Readable;
  /** Bytes the stream carries, when known. */
  readonly size: number | null;
  /** Resolves once the producer ended well; rejects (StorageError) otherwise. */
  done(): Promise<void>;
}

export interface DiskWritable {
  /** The disk's whole raw image, from offset 0. */
  readonly stream: Writable;
  /** Switches the written bytes in atomically, after checking the size; the stream must have finished. */
  commit(): Promise<void>;
  /** Drops what was written aside; the disk keeps its old bytes. */
  abort(): Promise<void>;
}

export interface StreamingDriver {
  readSnapshotStream(disk: DiskRef, snapshotId: string): Promise<SnapshotReadable>;
  /** The disk must exist; the bytes written must be exactly its size. */
  openDiskWrite(disk: DiskRef): Promise<DiskWritable>;
}

export function streamingOf(driver: StorageDriver): StreamingDriver | null {
  const d = driver as Partial<StreamingDriver>;
  return typeof d.readSnapshotStream === 'function' && typeof d.openDiskWrite === 'function' ? (driver as unknown as StreamingDriver) : null;
}

/** The driver's snapshot reader alone (a driver may read snapshots before it can write disks). */
export function snapshotReaderOf(driver: StorageDriver): Pick<StreamingDriver, 'readSnapshotStream'> | null {
  return typeof (driver as Partial<StreamingDriver>).readSnapshotStream === 'function' ? (driver as unknown as StreamingDriver) : null;
}

/** The driver's disk writer alone. */
export function diskWriterOf(driver: StorageDriver): Pick<StreamingDriver, 'openDiskWrite'> | null {
  return typeof (driver as Partial<StreamingDriver>).openDiskWrite === 'function' ? (driver as unknown as StreamingDriver) : null;
}
