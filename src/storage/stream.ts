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
import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { open, stat, unlink } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { StorageError, type DiskRef, type StorageDriver } from './driver.js';

export interface SnapshotReadable {
  /** The snapshot's raw image bytes. */
  readonly stream: Readable;
  /** Bytes the stream carries, when known. */
  readonly size: number | null;
  /** Resolves once the producer ended well; rejects (StorageError) otherwise. */
  done(): Promise<void>;
  /**
   * The image as a file that stays as it is until the stream is closed: a reader may open it
   * itself (hand it to a command's stdin) and then destroy the stream, without waiting for
   * done(); the file may be gone once the stream is closed, what was opened stays readable.
   * Unless `release` is there: then the file lives until release() (see there).
   */
  readonly path?: string;
  /**
   * Present when the file at `path` exists only for this read and cannot go while it is open (a
   * zfs clone of the snapshot: its unmount is refused while a reader holds the file). A caller
   * that hands `path` to commands calls release() once they have exited; it closes the stream
   * and removes what the read made. A caller that reads `stream` to its end needs not: done()
   * releases before it resolves.
   */
  release?(): Promise<void>;
}

export interface DiskWritable {
  /** The disk's whole raw image, from offset 0. */
  readonly stream: Writable;
  /**
   * The file aside that the stream writes, not created yet: a writer may have it made
   * (`createFile()`, with the disk's mode) and let a command write it instead of using `stream`
   * (never both).
   */
  readonly path?: string;
  createFile?(): Promise<void>;
  /**
   * The pipe the stream writes into (another node's receive): a command's stdout may be handed
   * to it instead of using `stream`; commit() then needs the SHA-256 the other side must find.
   */
  readonly pipe?: NodeJS.WritableStream;
  /**
   * Switches the written bytes in atomically, after checking the size; the stream (or what wrote
   * `path` or `pipe`) must have finished. `sha256`: what the bytes written through `pipe` hash
   * to (the other side commits only when it finds that).
   */
  commit(sha256?: string): Promise<void>;
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

/**
 * Runs the consumer argv it is given (`zfs recv`, `btrfs receive`, or ssh to a node's receive) with
 * a backup's stream on its stdin, and throws when either side failed. `onStreamSent`, when given,
 * is called once the whole stream has been handed to the consumer (the sender exited 0).
 */
export type DatasetFeed = (consumer: readonly string[], opts?: { readonly onStreamSent?: () => void }) => Promise<void>;

/** A driver that can replace a disk by a native full stream (ZfsDriver/BtrfsDriver.receiveDisk). */
export interface DatasetReceiver {
  receiveDisk(dst: DiskRef, received: string, feed: DatasetFeed): Promise<void>;
}

/** A restore's backup must be of the disk's size (`dst.sizeBytes`, when given: the backup's). */
export function assertBackupFits(dst: DiskRef, size: number): void {
  if (dst.sizeBytes !== undefined && dst.sizeBytes !== size) {
    throw new StorageError('size_mismatch', `Disk ${dst.path} has ${size} bytes, the backup ${dst.sizeBytes}`);
  }
}

export function datasetReceiverOf(driver: StorageDriver): DatasetReceiver | null {
  return typeof (driver as Partial<DatasetReceiver>).receiveDisk === 'function' ? (driver as unknown as DatasetReceiver) : null;
}

/**
 * The write stream of a file aside, made (`wx`) only when first asked for: a restore either
 * writes through it or hands the file's path to a command (DiskWritable.path), never both.
 */
export function lazyWriteStream(path: string, o: { mode?: number }): { stream(): Writable; create(): Promise<void>; finished(): Promise<void>; destroy(): Promise<void> } {
  let stream: Writable | null = null;
  let written: Promise<void> | null = null;
  return {
    async create() {
      const fh = await open(path, 'wx', o.mode ?? 0o666);
      await fh.close();
    },
    stream() {
      if (!stream) {
        stream = createWriteStream(path, { flags: 'wx', ...(o.mode !== undefined ? { mode: o.mode } : {}), highWaterMark: 4 * 1024 * 1024 });
        written = finished(stream);
        written.catch(() => undefined);
      }
      return stream;
    },
    finished: () => written ?? Promise.resolve(),
    async destroy() {
      stream?.destroy();
      await written?.catch(() => undefined);
    },
  };
}

/**
 * The DiskWritable of a driver that writes a restore into a file aside (`temp`, made with `mode`
 * through lazyWriteStream) and then switches it in. commit() waits for the writer, checks that it
 * carried exactly `size` bytes, and runs `switchIn()`; any failure until `switchIn()` returned
 * drops the file (and what `clear` undoes) and is thrown through `toError` (a StorageError passes
 * as it is). abort() drops too. `clear`: undoes what the driver marked for its crash recovery while
 * the file is aside (zfs: its restore property); called after the switch or a drop, and must not
 * throw.
 *
 * @example
 *   return asideWritable({ temp, size, disk: disk.path, toError: asStorageError,
 *     switchIn: () => rename(temp, image), clear: () => unmark() });
 */
export function asideWritable(o: {
  readonly temp: string;
  readonly mode?: number;
  readonly size: number;
  /** The disk's path, for messages. */
  readonly disk: string;
  switchIn(): Promise<void>;
  clear?(): Promise<void>;
  toError(err: unknown, what: string): StorageError;
}): DiskWritable {
  const aside = lazyWriteStream(o.temp, o.mode !== undefined ? { mode: o.mode } : {});
  const drop = async (): Promise<void> => {
    await aside.destroy();
    await unlink(o.temp).catch(() => undefined);
    await o.clear?.();
  };
  return {
    get stream() {
      return aside.stream();
    },
    path: o.temp,
    createFile: () => aside.create(),
    commit: async () => {
      try {
        await aside.finished();
        const got = (await stat(o.temp)).size;
        if (got !== o.size) throw new StorageError('size_mismatch', `Disk ${o.disk} has ${o.size} bytes, the stream carried ${got}`);
        await o.switchIn();
      } catch (err) {
        await drop();
        throw o.toError(err, `cannot write disk ${o.disk}`);
      }
      await o.clear?.();
    },
    abort: drop,
  };
}
