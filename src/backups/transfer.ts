/**
 * How a backup task on the backup node reaches the disk it reads or restores: on its own node
 * through the local drivers (embedded mode, or a backup to the same node), elsewhere through the
 * SSH transport (esnap's send and receive commands on the other node). Both give the same streams
 * (src/storage/stream.ts).
 */
import type { DiskRef, StorageDriver } from '../storage/driver.js';
import { StorageError } from '../storage/driver.js';
import { datasetReceiverOf, diskWriterOf, snapshotReaderOf, type DatasetFeed, type DiskWritable, type SnapshotReadable, type StreamingDriver } from '../storage/stream.js';

/**
 * Where a snapshot's image comes from for a file backup, best first: a file the commands read
 * themselves (restic's stdin and the hasher's are that file), a command that writes it into a
 * pipe end it is handed (ssh to the other node's send command, which hashes what it sends), or a
 * stream through this process (a driver that has neither).
 */
export type ImageSource =
  | {
      readonly kind: 'file';
      readonly path: string;
      readonly size: number | null;
      /** Called once the commands that read `path` have exited (a zfs clone cannot go before). */
      close(): Promise<void>;
    }
  | { readonly kind: 'command'; start(stdoutTo: NodeJS.WritableStream): ImageFeed }
  | { readonly kind: 'stream'; readonly readable: SnapshotReadable };

export interface ImageFeed {
  /** The image's SHA-256 and size as the sender read them; rejects when the sender failed. */
  readonly done: Promise<{ sha256: string; bytes: number }>;
  kill(reason: Error): void;
}

/** A disk on a storage of a node. */
export interface DiskEnd {
  readonly node: string;
  readonly storage: string;
  readonly disk: DiskRef;
}

export interface Transfer {
  /**
   * Takes snapshot `snapshot` (an `is-<n>` id) of the disk; one that exists already is kept.
   * `freezeTask`: the backup task whose fsfreeze the server announced to the disk's node, which
   * then freezes the guest around the snapshot (SshTransfer; on this node the caller freezes).
   * Resolves with why the freeze did not hold (the snapshot was taken unfrozen), or null.
   */
  createSnapshot(end: DiskEnd, snapshot: string, freezeTask?: string): Promise<{ freezeError: string | null }>;
  /** Destroys it; a missing one is fine. */
  destroySnapshot(end: DiskEnd, snapshot: string): Promise<void>;
  openSnapshotRead(end: DiskEnd, snapshot: string): Promise<SnapshotReadable>;
  /** The snapshot's image as the cheapest source this transfer has (see ImageSource). */
  openImageSource(end: DiskEnd, snapshot: string): Promise<ImageSource>;
  /** The target of a restore; `taskId` is the restore task the server announced to that node. */
  openDiskWrite(end: DiskEnd, taskId: string): Promise<DiskWritable>;
  /**
   * Replaces the disk by a native full stream (the restore of a dataset backup into a disk of the
   * backup's driver): `feed` runs the consumer argv it is given (`zfs recv` here, ssh to the node's
   * `receive dataset` there) with the stream on its stdin, and throws when either side failed.
   * `received` is the snapshot the stream carries. The disk's own snapshots go (see ZfsDriver.receiveDisk).
   */
  receiveDataset(end: DiskEnd, taskId: string, received: string, feed: DatasetFeed): Promise<void>;
}



/** The transfer to use for a disk on `node` (the agent's own node: local). */
export type TransferFor = (node: string) => Transfer;

export class LocalTransfer implements Transfer {
  constructor(private readonly drivers: ReadonlyMap<string, StorageDriver>) {}

  #driver(end: DiskEnd): StorageDriver {
    const d = this.drivers.get(end.storage);
    if (!d) throw new StorageError('backend', `Storage ${end.storage} does not exist on node ${end.node}`);
    return d;
  }

  #reader(end: DiskEnd): Pick<StreamingDriver, 'readSnapshotStream'> {
    const d = this.#driver(end);
    const s = snapshotReaderOf(d);
    if (!s) throw new StorageError('backend', `Storage ${end.storage} (driver ${d.kind}) cannot stream a disk's image for a file backup yet`);
    return s;
  }

  #writer(end: DiskEnd): Pick<StreamingDriver, 'openDiskWrite'> {
    const d = this.#driver(end);
    const s = diskWriterOf(d);
    if (!s) throw new StorageError('backend', `Storage ${end.storage} (driver ${d.kind}) cannot be restored into from a file backup yet`);
    return s;
  }

  async createSnapshot(end: DiskEnd, snapshot: string): Promise<{ freezeError: null }> {
    const d = this.#driver(end);
    this.#reader(end); // refuse before a snapshot is made that nothing can read
    try {
      await d.create(end.disk, snapshot, { name: snapshot });
    } catch (err) {
      if (!(err instanceof StorageError && err.code === 'snapshot_exists')) throw err;
    }
    return { freezeError: null };
  }

  async destroySnapshot(end: DiskEnd, snapshot: string): Promise<void> {
    await this.#driver(end).destroy(end.disk, [snapshot]);
  }

  openSnapshotRead(end: DiskEnd, snapshot: string): Promise<SnapshotReadable> {
    return this.#reader(end).readSnapshotStream(end.disk, snapshot);
  }

  async openImageSource(end: DiskEnd, snapshot: string): Promise<ImageSource> {
    const readable = await this.openSnapshotRead(end, snapshot);
    if (readable.path === undefined) return { kind: 'stream', readable };
    const release = readable.release?.bind(readable);
    return {
      kind: 'file',
      path: readable.path,
      size: readable.size,
      close: async () => {
        if (release) return release();
        readable.stream.destroy();
      },
    };
  }

  openDiskWrite(end: DiskEnd): Promise<DiskWritable> {
    return this.#writer(end).openDiskWrite(end.disk);
  }

  receiveDataset(end: DiskEnd, _taskId: string, received: string, feed: DatasetFeed): Promise<void> {
    const d = this.#driver(end);
    const r = datasetReceiverOf(d);
    if (!r) throw new StorageError('backend', `Storage ${end.storage} (driver ${d.kind}) cannot receive a dataset stream`);
    return r.receiveDisk(end.disk, received, feed);
  }
}

/** Local for the agent's own node; other nodes need the SSH transport (cluster mode). */
export function defaultTransferFor(ownNode: string, drivers: ReadonlyMap<string, StorageDriver>, remote?: TransferFor): TransferFor {
  const local = new LocalTransfer(drivers);
  return (node) => {
    if (node === ownNode) return local;
    if (remote) return remote(node);
    throw new StorageError('backend', `No transport from node ${ownNode} to node ${node} (backups between nodes need the SSH transport)`);
  };
}
