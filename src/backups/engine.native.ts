/**
 * Type 1 (dataset) backups: native `zfs send | zfs recv` and `btrfs send | btrfs receive`, from
 * the source disk's node (this node through local pipes, another over SSH: src/transport/) into a
 * chain on a backup storage of the same driver (src/transport/dataset-backup.ts).
 *
 * Create: snapshot `is-<id>` of the source disk (frozen around it when asked, on the disk's own
 * node: source-snapshot.ts), sent incrementally from the newest backup's base `is-<m>` when that is still on both
 * sides, else in full into a new chain (the task's detail says why: a forced rollback destroyed the
 * base). `is-<id>` stays on the source disk as the next base; the old base is released. The
 * recorded checksum is `stream:<SHA-256 of the send stream that was received>`: the received
 * image is not read back (that read of the whole disk cost 8 times the transfer of an incremental;
 * docs/backups.md "Checksums of dataset backups" has the decision and its trade-off). The
 * definition's bwlimit throttles the stream. Restore: the backup's image, read on this node (the
 * filesystem checks every block's own checksum on that read), hashed, streamed into the target
 * disk's crash-safe write (Transfer.openDiskWrite) and committed only when the target received
 * exactly what was read (the SHA-256 in the commit line). Verify: a full `zfs send`/`btrfs send`
 * of the backup into the hasher: every block read and checked by the filesystem; a read error is
 * damage. Backups recorded before (a plain image SHA-256) are still compared with their image's
 * SHA-256 on restore and verify. Delete: the chain's snapshot (and the chain when it is empty).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StorageError } from '../storage/driver.js';
import type { StorageConfig } from '../storage/drivers.js';
import { outsideScope, pointOfNoReturn } from '../storage/op-scope.js';
import { takeSourceSnapshot } from './source-snapshot.js';
import { datasetRestoreDropsSnapshots, datasetRestoreSupported, nativeBaseSnapshot, nativeKind } from '../transport/native-streams.js';
import { backupPresent, chainSendArgv, findChain, imageChecksum, locateBackup, pullDataset, removeBackup, withBackupImage, type PullSource } from '../transport/dataset-backup.js';
import type { BackupAgentIo, BackupEngine } from './engine.js';
import type { BackupPayload } from './backup.payloads.js';
import { BACKUP_DAMAGED_MSG } from './engine.restic.js';
import type { DiskEnd } from './transfer.js';
import { spawnHasher } from './image-hash.js';

type CreatePayload = Extract<BackupPayload, { op: 'backup_create' }>;

/** What a dataset backup's checksum starts with when it is the SHA-256 of the received send stream. */
export const STREAM_PREFIX = 'stream:';

/**
 * A full send of the backup into the hasher, process to process: zfs and btrfs check each block's
 * checksum as they read it and fail the send on a mismatch (EIO). Resolves with the stream's
 * SHA-256; rejects (damage, or the backup is gone) when the send fails.
 */
async function fullSendChecksum(io: BackupAgentIo, cfg: StorageConfig, chain: string, snapshot: string): Promise<string> {
  if (!io.runner.spawn) throw new StorageError('backend', 'this command runner cannot stream');
  const hasher = await spawnHasher(io.runner);
  const argv = chainSendArgv(cfg, chain, snapshot);
  const hin = hasher.command.stdin!;
  let send;
  try {
    send = io.runner.spawn(argv, { stdoutTo: hin, stdout: 'capture', timeoutMs: 24 * 3600_000 });
  } catch (err) {
    hasher.command.kill(err as Error);
    throw err;
  } finally {
    (hin as unknown as { destroy(): void }).destroy();
  }
  const [r, sum] = await Promise.all([send.done, hasher.digest.then((v) => ({ v, e: null }), (e: unknown) => ({ v: null, e }))]);
  if (r.code !== 0) throw new StorageError('backend', `${argv.slice(0, 2).join(' ')} of backup ${snapshot} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 500)}`);
  if (sum.e) throw sum.e;
  return sum.v!;
}

/**
 * The restore of a dataset backup into a disk of its driver: `zfs send`/`btrfs send` of the backup (a
 * full stream; the filesystem checks every block it reads, and `zfs recv` the stream's own
 * checksums) straight into the target's receive, which swaps the disk in only once the stream
 * arrived whole.
 */
async function receiveNatively(io: BackupAgentIo, target: DiskEnd, taskId: string, send: readonly string[], snapshot: string): Promise<void> {
  if (!io.runner.pipe) throw new StorageError('backend', 'this command runner cannot pipe');
  const pipe = io.runner.pipe.bind(io.runner);
  await io.transferFor(target.node).receiveDataset(target, taskId, snapshot, async (consumer, opts) => {
    const { producer, consumer: c } = await pipe(send, consumer, { timeoutMs: 24 * 3600_000, env: { LC_ALL: 'C' }, onProducerDone: opts?.onStreamSent });
    if (producer.code === 0 && c.code === 0) return;
    const say = (argv: readonly string[], r: { code: number; stderr: string }): string =>
      `${argv[0] === 'ssh' ? `the receive on node ${target.node}` : argv.slice(0, 2).join(' ')} exited ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`;
    const parts = [producer.code !== 0 ? say(send, producer) : '', c.code !== 0 ? say(consumer, c) : ''].filter(Boolean);
    throw new StorageError('backend', `Restore of backup ${snapshot} into disk ${target.disk.path} failed: ${parts.join('; ')}`);
  });
}

function storageConfig(io: BackupAgentIo, name: string): StorageConfig {
  const cfg = io.storageConfigs?.get(name);
  if (!cfg) throw new StorageError('backend', `Storage ${name} does not exist on node ${io.node}`);
  if (nativeKind(cfg.driver) === null) throw new StorageError('backend', `Storage ${name} (${cfg.driver}) cannot hold dataset backups`);
  return cfg;
}

function sourceOf(io: BackupAgentIo, end: DiskEnd): PullSource {
  if (end.node === io.node) return { kind: 'local', storage: storageConfig(io, end.storage) };
  const address = io.ssh?.addressOf(end.node) ?? null;
  if (!io.ssh || !address) throw new StorageError('backend', `No SSH address of node ${end.node} is known on node ${io.node} (its agent has not registered one)`);
  return { kind: 'ssh', address, sshDir: io.ssh.dir, storage: end.storage };
}

/** Takes or releases `is-<n>` on the source disk: local commands, or the forced command over SSH. */
async function baseSnapshot(io: BackupAgentIo, end: DiskEnd, id: string, op: 'snapshot' | 'release'): Promise<void> {
  if (end.node === io.node) return nativeBaseSnapshot(io.runner, storageConfig(io, end.storage), end.disk.path, id, op);
  const transfer = io.transferFor(end.node);
  if (op === 'release') return transfer.destroySnapshot(end, id);
  await transfer.createSnapshot(end, id);
}

function takeSnapshot(p: CreatePayload, io: BackupAgentIo): Promise<string | null> {
  return takeSourceSnapshot(p, io, async (task) => {
    if (p.source.node !== io.node) return io.transferFor(p.source.node).createSnapshot(p.source, p.snapshot, task);
    await baseSnapshot(io, p.source, p.snapshot, 'snapshot');
    return { freezeError: null };
  });
}

/** `<disk path with / as _>-<backup id>`: a chain name an operator can read. */
function newChainName(p: CreatePayload): string {
  return `${p.source.disk.path.replace(/\//g, '_').slice(0, 100)}-${p.backupId}`;
}

function located(io: BackupAgentIo, from: { storage: string; filename: string }): { cfg: StorageConfig; chain: string; snapshot: string } {
  const cfg = storageConfig(io, from.storage);
  const at = locateBackup(cfg, from.filename);
  if (!at) throw new StorageError('backend', `${from.filename} is not a dataset backup on storage ${from.storage}`);
  return { cfg, ...at };
}

export const nativeEngine: BackupEngine = {
  async create(p, io) {
    const began = Date.now();
    const target = storageConfig(io, p.storage);
    const source = sourceOf(io, p.source);
    const freezeError = await takeSnapshot(p, io);
    try {
      const base = p.base && p.base !== p.snapshot ? p.base : null;
      // The chain is named by the base backup's location; a listing of the backup storage only for a
      // backup recorded without one (or one that is not this storage's).
      const named = base && p.baseFile ? locateBackup(target, p.baseFile) : null;
      const chain = !base ? null : named?.snapshot === base ? named.chain : await findChain(io.runner, target, base);
      const r = await pullDataset(io.runner, { source, disk: p.source.disk.path, snapshot: p.snapshot, base, target, chain, newChain: newChainName(p), checksum: false, bwlimit: p.bwlimit ?? null });
      // The new snapshot is the next base; the old one has served (a failure to release it only costs space).
      if (base) {
        await outsideScope(() => baseSnapshot(io, p.source, base, 'release')).catch((err: unknown) =>
          io.log.warn({ err, snapshot: base }, 'could not release the previous backup base on the source disk'),
        );
      }
      const seconds = Math.round((Date.now() - began) / 1000);
      const notes = [r.detail, freezeError ? `msg='${freezeError}'` : ''].filter(Boolean).join(', ');
      return {
        resticId: null,
        filePath: r.location,
        baseSnapshot: p.snapshot,
        checksum: `${STREAM_PREFIX}${r.streamChecksum}`,
        size: r.bytes,
        added: r.bytes,
        seconds,
        detail: `size=${r.bytes}, full=${r.full}, time_elapsed=${seconds}${notes ? `, ${notes}` : ''}`,
      };
    } catch (err) {
      await outsideScope(() => baseSnapshot(io, p.source, p.snapshot, 'release')).catch((e: unknown) =>
        io.log.error({ err: e, snapshot: p.snapshot }, 'could not release the snapshot of a failed backup'),
      );
      throw err;
    }
  },

  async restore(p, io) {
    const { cfg, chain, snapshot } = located(io, p.from);
    if (p.targetDriver !== undefined && datasetRestoreSupported(cfg.driver, p.targetDriver)) {
      await receiveNatively(io, p.target, p.taskId, chainSendArgv(cfg, chain, snapshot), snapshot);
      return { replaced: true, snapshotsGone: datasetRestoreDropsSnapshots(p.targetDriver) };
    }
    const sink = await io.transferFor(p.target.node).openDiskWrite(p.target, p.taskId);
    const hash = createHash('sha256');
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await withBackupImage(io.runner, cfg, chain, snapshot, (path) => pipeline(createReadStream(path), tap, sink.stream));
    } catch (err) {
      await sink.abort();
      throw err;
    }
    const read = hash.digest('hex');
    // A stream-checksum backup: the filesystem checked every block of what was read; the other
    // side commits only what it received whole (the SHA-256 of what was read, in the commit line).
    if (!p.checksum.startsWith(STREAM_PREFIX) && read !== p.checksum) {
      await sink.abort();
      throw new StorageError('backend', BACKUP_DAMAGED_MSG);
    }
    pointOfNoReturn();
    await sink.commit(read);
    return { replaced: false };
  },

  async verify(p, io) {
    try {
      const { cfg, chain, snapshot } = located(io, p.from);
      if (p.checksum.startsWith(STREAM_PREFIX)) {
        const sum = await fullSendChecksum(io, cfg, chain, snapshot);
        return { ok: true, checksum: `send:${sum}` };
      }
      const checksum = await imageChecksum(io.runner, cfg, chain, snapshot);
      return { ok: checksum === p.checksum, checksum };
    } catch (err) {
      return { ok: false, checksum: null, error: err instanceof Error ? err.message : String(err) };
    }
  },

  async remove(p, io) {
    for (const item of p.items ?? []) {
      const { cfg, chain, snapshot } = located(io, { storage: item.storage, filename: item.filename });
      await removeBackup(io.runner, cfg, chain, snapshot);
    }
  },

  async present(p, io) {
    const filenames: string[] = [];
    for (const item of p.items ?? []) {
      const { cfg, chain, snapshot } = located(io, { storage: item.storage, filename: item.filename });
      if (await backupPresent(io.runner, cfg, chain, snapshot)) filenames.push(item.filename);
    }
    return { resticIds: [], filenames };
  },

  async cleanup(p, io) {
    await baseSnapshot(io, p.source, p.snapshot, 'release');
    const target = storageConfig(io, p.storage);
    const chain = await findChain(io.runner, target, p.snapshot);
    if (chain) await removeBackup(io.runner, target, chain, p.snapshot);
  },
};
