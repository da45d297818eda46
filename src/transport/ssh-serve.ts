/**
 * `esnap ssh-serve <serve.json>`: the forced command of the backup nodes' keys (trust-files.ts).
 * sshd runs it with the client's command in SSH_ORIGINAL_COMMAND; it parses that
 * (serve-request.ts), refuses anything else, and runs one request on this node's storages:
 *
 * - `send dataset`: `zfs send [-i base]` / `btrfs send [-p base]` of the snapshot to stdout. A base
 *   that is gone (a forced rollback destroyed it) exits EXIT_BASE_MISSING with nothing sent (the
 *   send refuses it before its first byte; only then is it looked up), so the backup node sends a
 *   full stream instead.
 * - `send image`: the snapshot's raw image (the driver's readSnapshotStream) to stdout, hashed on
 *   the way; when all went out, `esnap: image <bytes> bytes sha256 <hex>` is the last stderr line
 *   (the backup node records it without the bytes passing through its own process).
 * - `receive`: only while the server has announced that restore task for that disk to this node
 *   (announcements.ts; waited for a while, bounded, since a busy agent may apply it late): stdin goes to the driver's crash-safe disk write, committed only when
 *   exactly the disk's size arrived followed by the sender's `commit <sha-256>` line naming the
 *   same SHA-256; an abort or a dropped connection ends without it (old bytes stay).
 * - `receive dataset`: only during an announced restore, like `receive`: stdin (a `zfs send` of the
 *   backup) goes straight into `zfs recv`, which replaces the disk's dataset (ZfsDriver.receiveDisk:
 *   the old dataset waits aside until the stream was received whole, then goes with its snapshots).
 * - `snapshot` / `release`: take or destroy a backup's `is-<n>` source snapshot; `snapshot … freeze
 *   <task id>` freezes the guest around it through its agent socket on this node, which the server
 *   announced for that backup task (announcements.ts); a freeze that did not hold is said on a
 *   stderr line `esnap: freeze: …` (FREEZE_NOTE_PREFIX), the snapshot taken all the same.
 *
 * It never calls a driver's init(): that repairs interrupted operations, which is the agent's job
 * (a restore the agent is running would look interrupted from here). zfs and btrfs snapshots are
 * taken and destroyed with their own commands for the same reason.
 *
 * Messages go to stderr as `esnap: refused: …` (exit 2) or `esnap: …` (exit 1 or 3); the client
 * shows them in the task's detail.
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable, type Writable } from 'node:stream';
import type { StorageConfig } from '../storage/drivers.js';
import type { CommandRunner } from '../storage/runner.js';
import { NodeCommandRunner } from '../storage/node-runner.js';
import { announcedFreeze, announcedReceive } from './announcements.js';
import { COMMIT_PREFIX, EXIT_BASE_MISSING, EXIT_FAILED, EXIT_REFUSED, FREEZE_NOTE_PREFIX, parseServeRequest, ServeRefusal, type ServeRequest } from './serve-request.js';
import { nativeBaseSnapshot, nativeKind, nativeSnapshotExists, sendArgv } from './native-streams.js';
import { ANNOUNCE_WAIT_MS, type ServeConfig } from './trust-files.js';

/*
 * The storage drivers and the guest freeze, loaded by the requests that use them: a dataset send
 * (every type 1 backup, a forced command started per transfer) runs `zfs`/`btrfs` alone, and
 * loading every driver cost it ~45 ms of a ~0.65 s incremental send (bench/README.md).
 */
const drivers = () => import('../storage/drivers.js');
const streams = () => import('../storage/stream.js');
const freeze = () => import('../guest/freeze.js');

export interface ServeIo {
  readonly stdin: Readable;
  /**
   * The file descriptor behind `stdin`, handed to `zfs recv` as its stdin for a `receive dataset`
   * (the stream then never passes through this process). Absent: the bytes are piped through.
   */
  readonly stdinFd?: number;
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly runner: CommandRunner;
  readonly now: () => Date;
}

class ServeFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export function loadServeConfigFile(path: string): ServeConfig {
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<ServeConfig>;
  if (typeof parsed.node !== 'string' || !Array.isArray(parsed.storages) || typeof parsed.announcedDir !== 'string') {
    throw new Error(`${path} is not esnap's serve configuration`);
  }
  return parsed as ServeConfig;
}

/** Runs one request; resolves with the exit code (the message is already on stderr). */
export async function serve(config: ServeConfig, command: string | undefined, io: ServeIo): Promise<number> {
  let request: ServeRequest;
  try {
    request = parseServeRequest(command, config.storages.map((s) => s.name));
  } catch (err) {
    if (!(err instanceof ServeRefusal)) throw err;
    io.stderr.write(`esnap: refused: ${err.message}\n`);
    return EXIT_REFUSED;
  }
  const cfg = config.storages.find((s) => s.name === request.storage)!;
  try {
    await run(config, cfg, request, io);
    return 0;
  } catch (err) {
    const code = err instanceof ServeFailure ? err.exitCode : EXIT_FAILED;
    const message = err instanceof Error ? err.message : String(err);
    io.stderr.write(code === EXIT_REFUSED ? `esnap: refused: ${message}\n` : `esnap: ${message}\n`);
    return code;
  }
}

async function run(config: ServeConfig, cfg: StorageConfig, r: ServeRequest, io: ServeIo): Promise<void> {
  const where = `disk ${r.disk} on storage ${cfg.name} of node ${config.node}`;
  switch (r.op) {
    case 'send': {
      if (r.format === 'dataset') {
        if (nativeKind(cfg.driver) === null) throw new ServeFailure(`storage ${cfg.name} (${cfg.driver}) cannot send a dataset stream`, EXIT_REFUSED);
        // No look-up first (two `zfs list` cost ~40 ms of a ~0.6 s incremental): zfs and btrfs refuse a
        // missing snapshot or base before they send a byte, and only a failure asks which it was.
        const gone = (id: string): Promise<boolean> => nativeSnapshotExists(io.runner, cfg, r.disk, id).then((has) => !has, () => false);
        try {
          await streamOut(io, sendArgv(cfg, r.disk, r.snapshot, r.base));
        } catch (err) {
          if (await gone(r.snapshot)) throw new ServeFailure(`snapshot ${r.snapshot} of ${where} does not exist`, EXIT_FAILED);
          if (r.base !== null && (await gone(r.base))) {
            throw new ServeFailure(`base snapshot ${r.base} of ${where} is gone (a rollback destroyed it?): send a full stream`, EXIT_BASE_MISSING);
          }
          throw err;
        }
        return;
      }
      // A driver may read snapshots before it can write disks (qcow2): the reader alone.
      const [{ createDriver }, { snapshotReaderOf }] = await Promise.all([drivers(), streams()]);
      const reader = snapshotReaderOf(createDriver(cfg, io.runner));
      if (!reader) throw new ServeFailure(`storage ${cfg.name} (${cfg.driver}) cannot stream images`, EXIT_REFUSED);
      const read = await reader.readSnapshotStream({ path: r.disk }, r.snapshot);
      const hash = createHash('sha256');
      let bytes = 0;
      const tap = new Transform({
        highWaterMark: 4 * 1024 * 1024,
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          bytes += chunk.length;
          cb(null, chunk);
        },
      });
      await Promise.all([pipeline(read.stream, tap, io.stdout, { end: false }), read.done()]);
      io.stderr.write(`esnap: image ${bytes} bytes sha256 ${hash.digest('hex')}\n`);
      return;
    }
    case 'receive': {
      const size = await requireAnnouncement(config, r, io, where);
      const [{ createDriver }, { diskWriterOf }] = await Promise.all([drivers(), streams()]);
      const writer = diskWriterOf(createDriver(cfg, io.runner));
      if (!writer) throw new ServeFailure(`storage ${cfg.name} (${cfg.driver}) cannot write images`, EXIT_REFUSED);
      const write = await writer.openDiskWrite({ path: r.disk, sizeBytes: size });
      // The image (exactly `size` bytes), then the sender's `commit <sha-256>\n` (ssh-transfer.ts).
      const hash = createHash('sha256');
      let received = 0;
      let trailer = '';
      const split = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          const body = chunk.subarray(0, Math.max(0, size - received));
          received += body.length;
          if (body.length > 0) hash.update(body);
          trailer += chunk.subarray(body.length).toString('latin1');
          if (trailer.length > 128) return cb(new Error('more bytes than the disk holds'));
          cb(null, body.length > 0 ? body : undefined);
        },
      });
      try {
        await pipeline(io.stdin, split, write.stream);
      } catch (err) {
        await write.abort();
        throw new ServeFailure(`the image stream broke off; ${where} keeps its old bytes (${(err as Error).message})`, EXIT_FAILED);
      }
      const sha = hash.digest('hex');
      if (received !== size || trailer !== `${COMMIT_PREFIX}${sha}\n`) {
        await write.abort();
        const why = received !== size ? `the image stream ended after ${received} of ${size} bytes` : 'the sender did not commit this image (aborted, or its checksum differs)';
        throw new ServeFailure(`${why}; ${where} keeps its old bytes`, EXIT_FAILED);
      }
      await write.commit().catch(async (err: unknown) => {
        await write.abort().catch(() => undefined);
        throw err;
      });
      return;
    }
    case 'receive-dataset': {
      const size = await requireAnnouncement(config, r, io, where);
      const [{ createDriver }, { datasetReceiverOf }] = await Promise.all([drivers(), streams()]);
      const receiver = datasetReceiverOf(createDriver(cfg, io.runner));
      if (!receiver) throw new ServeFailure(`storage ${cfg.name} (${cfg.driver}) cannot receive a dataset stream`, EXIT_REFUSED);
      await receiver.receiveDisk({ path: r.disk, sizeBytes: size }, r.snapshot, (recv) => receiveFromStdin(io, recv));
      return;
    }
    case 'release': {
      if (nativeKind(cfg.driver) !== null) return nativeBaseSnapshot(io.runner, cfg, r.disk, r.snapshot, r.op);
      const { createDriver } = await drivers();
      return createDriver(cfg, io.runner).destroy({ path: r.disk }, [r.snapshot]);
    }
    case 'snapshot': {
      const take = async (): Promise<void> => {
        if (nativeKind(cfg.driver) !== null) return nativeBaseSnapshot(io.runner, cfg, r.disk, r.snapshot, r.op);
        const { createDriver } = await drivers();
        const driver = createDriver(cfg, io.runner);
        if ((await driver.list({ path: r.disk })).some((x) => x.id === r.snapshot)) return;
        await driver.create({ path: r.disk }, r.snapshot, { name: r.snapshot });
      };
      if (r.freezeTask === null) return take();
      // The guest agent's socket is on this node; which one comes from the server's announcement
      // of that backup task, never from the request. A freeze that cannot be done (none announced,
      // the agent does not answer) still takes the snapshot, unfrozen, and says so.
      const socket = await awaitAnnounced(config, io, (now) => announcedFreeze(config.announcedDir, r.freezeTask!, r.storage, r.disk, now));
      if (socket === null) {
        await take();
        io.stderr.write(`${FREEZE_NOTE_PREFIX}Filesystem freeze failed (no fsfreeze of backup task ${r.freezeTask} was announced to node ${config.node})\n`);
        return;
      }
      const { DEFAULT_FREEZE_LIMIT_MS, withFreeze } = await freeze();
      const frozen = await withFreeze({ socket, limitMs: config.freezeLimitMs ?? DEFAULT_FREEZE_LIMIT_MS }, take);
      if (frozen.error) io.stderr.write(`${FREEZE_NOTE_PREFIX}${frozen.error.replace(/\n/g, ' / ')}\n`);
      return;
    }
  }
}

/**
 * The announced disk size of a receive, polled until it appears or serve.json's announceWaitMs
 * (default ANNOUNCE_WAIT_MS) has passed: the server queues the announcement to this node before
 * the restore task to the backup node, but a busy agent may apply it after the backup node has
 * connected. Not announced within the wait: refused (EXIT_REFUSED).
 */
async function requireAnnouncement(config: ServeConfig, r: Extract<ServeRequest, { op: 'receive' | 'receive-dataset' }>, io: ServeIo, where: string): Promise<number> {
  const size = await awaitAnnounced(config, io, (now) => announcedReceive(config.announcedDir, r.taskId, r.storage, r.disk, now));
  if (size === null) throw new ServeFailure(`no restore task ${r.taskId} of ${where} was announced to this node`, EXIT_REFUSED);
  return size;
}

/** `read` polled until it gives a value or serve.json's announceWaitMs has passed (see above). */
async function awaitAnnounced<T>(config: ServeConfig, io: ServeIo, read: (now: Date) => Promise<T | null>): Promise<T | null> {
  const waitMs = config.announceWaitMs ?? ANNOUNCE_WAIT_MS;
  const end = Date.now() + waitMs;
  for (;;) {
    const value = await read(io.now());
    if (value !== null || Date.now() >= end) return value;
    await new Promise((res) => setTimeout(res, Math.min(250, Math.max(1, end - Date.now()))));
  }
}

/** Runs `argv` (zfs recv) with our stdin as its own; fails with its stderr when it exits non-zero. */
async function receiveFromStdin(io: ServeIo, argv: readonly string[]): Promise<void> {
  if (!io.runner.spawn) throw new Error('the command runner cannot stream');
  const timeoutMs = 7 * 24 * 3600_000;
  const child = io.runner.spawn(argv, io.stdinFd !== undefined ? { stdinFrom: io.stdinFd, timeoutMs } : { stdin: 'pipe', timeoutMs });
  const flow = io.stdinFd !== undefined ? null : pipeline(io.stdin, child.stdin as Writable).catch(() => undefined);
  const [result] = await Promise.all([child.done, flow]);
  if (result.code !== 0) throw new ServeFailure(`${argv.slice(0, 2).join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`, EXIT_FAILED);
}

/** Spawns `argv` with its stdout going to ours; fails with its stderr when it exits non-zero. */
async function streamOut(io: ServeIo, argv: string[]): Promise<void> {
  if (!io.runner.spawn) throw new Error('the command runner cannot stream');
  const child = io.runner.spawn(argv, { stdout: 'stream', timeoutMs: 7 * 24 * 3600_000 });
  const out = child.stdout as Readable;
  const [result] = await Promise.all([child.done, pipeline(out, io.stdout, { end: false }).catch(() => child.kill(new Error('stdout closed')))]);
  if (result.code !== 0) throw new ServeFailure(`${argv.slice(0, 2).join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`, EXIT_FAILED);
}

/** The forced command's entry (`esnap-ssh-serve <serve.json>`, `esnap ssh-serve <serve.json>`): the request is in SSH_ORIGINAL_COMMAND, never in argv. */
export async function runSshServe(args: readonly string[]): Promise<number> {
  if (args.length !== 1 || !args[0]) {
    process.stderr.write('esnap: refused: ssh-serve takes the path of its serve.json only\n');
    return EXIT_REFUSED;
  }
  return serve(loadServeConfigFile(args[0]), process.env['SSH_ORIGINAL_COMMAND'], {
    // Made on first use: Node's stdin stream sets its pipe non-blocking, which a `zfs recv` given
    // fd 0 (stdinFd) would then read as EAGAIN.
    get stdin() {
      return process.stdin;
    },
    stdinFd: 0,
    stdout: process.stdout,
    stderr: process.stderr,
    runner: new NodeCommandRunner(),
    now: () => new Date(),
  });
}
