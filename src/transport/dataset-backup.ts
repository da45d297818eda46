/**
 * Backup type 1 (dataset) on the backup node: pulls a snapshot of a source disk as a native
 * stream (`zfs send`/`btrfs send`, incremental from the newest common base) and receives it into
 * a chain on a backup storage of the same driver (native-streams.ts). The source is this node
 * (local pipes) or another node over SSH (its forced command's `send dataset`).
 *
 *   const r = await pullDataset(runner, {
 *     source: { kind: 'ssh', address, sshDir, storage: 'tank' }, disk: 'vm1-disk0',
 *     snapshot: 'is-8', base: 'is-7', chain: 'vm1-0-7', newChain: 'vm1-0-8', target: backupStorage,
 *   });
 *   // r.full: the base was gone (a rollback destroyed it): a full stream went into newChain
 *
 * Fail safe: a failed transfer leaves nothing half-received listed in the chain (zfs receives
 * atomically; a partial btrfs subvolume is deleted, a new zfs chain with no snapshot destroyed), and
 * the error names the side that failed with its own words (ssh, sshd gone, zfs recv, …).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageError } from '../storage/driver.js';
import type { StorageConfig } from '../storage/drivers.js';
import type { CommandRunner, RunResult } from '../storage/runner.js';
import type { SshAddress } from './ssh-address.js';
import { sshArgv, SSH_FAILED } from './ssh-client.js';
import { EXIT_BASE_MISSING } from './serve-request.js';
import { chainLocation, chainSnapshot, nativeKind, nativeSnapshotExists, receiveArgv, sendArgv, type NativeKind } from './native-streams.js';

/** The raw image inside a zfs dataset or btrfs subvolume (both drivers' IMAGE_NAME). */
const IMAGE_NAME = 'disk.img';
/** A chain is one path segment on the backup storage. */
const CHAIN_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export type PullSource =
  | { readonly kind: 'local'; readonly storage: StorageConfig }
  | { readonly kind: 'ssh'; readonly address: SshAddress; readonly sshDir: string; readonly storage: string };

export interface PullRequest {
  readonly source: PullSource;
  /** The disk's path on its storage. */
  readonly disk: string;
  /** The snapshot to back up (on the source disk, taken before). */
  readonly snapshot: string;
  /** The previous backup's snapshot: the incremental base, when it is still on both sides. */
  readonly base: string | null;
  /** The backup storage (on this node). */
  readonly target: StorageConfig;
  /** The chain that holds `base` (ignored without a base). */
  readonly chain: string | null;
  /** Where a full stream goes: a chain not used before. */
  readonly newChain: string;
  /** Whether to read the received image back for its SHA-256 (a full read of the disk). */
  readonly checksum?: boolean;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /** Called with the bytes sent so far, as chunks cross. */
  readonly onProgress?: (bytes: number) => void;
  /** Bytes per second the stream may cross at (the definition's bwlimit); null or absent: no limit. */
  readonly bwlimit?: number | null;
}

export interface PullResult {
  /** Whether a full stream was sent (no base, or the base was gone). */
  readonly full: boolean;
  /** Why it was full although a base was asked for; '' otherwise. Goes into the task's detail. */
  readonly detail: string;
  readonly chain: string;
  /** `dataset@snapshot` (zfs) or the received subvolume's path (btrfs). */
  readonly location: string;
  /** Bytes of the stream that crossed. */
  readonly bytes: number;
  /** SHA-256 (hex) of the received snapshot's image, when asked for. */
  readonly checksum: string | null;
  /** SHA-256 (hex) of the send stream that crossed (what zfs recv / btrfs receive got). */
  readonly streamChecksum: string;
}

export class TransferError extends StorageError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('backend', message, options);
  }
}

function sourceName(s: PullSource): string {
  return s.kind === 'local' ? `storage ${s.storage.name}` : `${s.address.host}:${s.address.port}`;
}

export async function pullDataset(runner: CommandRunner, req: PullRequest): Promise<PullResult> {
  const kind = nativeKind(req.target.driver);
  if (kind === null) throw new TransferError(`Backup storage ${req.target.name} (${req.target.driver}) cannot receive a dataset stream`);
  for (const c of [req.newChain, ...(req.chain ? [req.chain] : [])]) {
    if (!CHAIN_RE.test(c)) throw new TransferError(`Invalid backup chain name: ${JSON.stringify(c)}`);
  }
  let base = req.base;
  let detail = '';
  const notStored = (id: string): string => `base ${id} is not in the backup storage: full backup`;
  const notOnSource = (id: string): string => `base ${id} is no longer on the source disk (a rollback destroyed it): full backup`;
  // btrfs's checks are a stat each, done first. zfs's are a `zfs list` each (~40 ms of a ~0.6 s
  // incremental on zfs-fuse): skipped, since `zfs send -i` and `zfs recv` refuse a missing base
  // before any data flows, and asked only when the incremental failed.
  const lookFirst = (kind: NativeKind | null): boolean => kind !== 'zfs';
  const sourceKind = req.source.kind === 'local' ? nativeKind(req.source.storage.driver) : null;
  if (base !== null && (req.chain === null || (lookFirst(kind) && !(await chainHas(runner, req.target, req.chain, base))))) {
    detail = notStored(base);
    base = null;
  }
  if (base !== null && req.source.kind === 'local' && lookFirst(sourceKind) && !(await nativeSnapshotExists(runner, req.source.storage, req.disk, base))) {
    detail = notOnSource(base);
    base = null;
  }
  if (base !== null) {
    const from = base;
    const r = await transfer(runner, req, from, req.chain!).catch(async (err: unknown) => {
      const exists = (p: Promise<boolean>): Promise<boolean> => p.catch(() => true);
      if (req.source.kind === 'local' && !(await exists(nativeSnapshotExists(runner, req.source.storage, req.disk, from)))) return 'base_missing' as const;
      if (!(await exists(chainHas(runner, req.target, req.chain!, from)))) return 'not_stored' as const;
      throw err;
    });
    if (r !== 'base_missing' && r !== 'not_stored') return finish(runner, req, { full: false, detail, chain: req.chain!, ...r });
    detail = r === 'not_stored' ? notStored(from) : notOnSource(from);
  }
  const sent = await transfer(runner, req, null, req.newChain);
  if (sent === 'base_missing') throw new TransferError('full send refused as incremental'); // cannot happen: no base was sent
  return finish(runner, req, { full: true, detail, chain: req.newChain, ...sent });
}

async function finish(runner: CommandRunner, req: PullRequest, r: { full: boolean; detail: string; chain: string; bytes: number; streamChecksum: string }): Promise<PullResult> {
  const location = chainSnapshot(req.target, r.chain, req.snapshot);
  const checksum = req.checksum === false ? null : await imageChecksum(runner, req.target, r.chain, req.snapshot);
  return { ...r, location, checksum };
}

async function chainHas(runner: CommandRunner, target: StorageConfig, chain: string, id: string): Promise<boolean> {
  const snap = chainSnapshot(target, chain, id);
  if (nativeKind(target.driver) === 'zfs') {
    const r = await runner.run(['zfs', 'list', '-H', '-o', 'name', snap], { timeoutMs: 60_000 });
    return r.code === 0;
  }
  return lstat(snap).then(
    (st) => st.isDirectory(),
    () => false,
  );
}

/**
 * Whether a backup's snapshot is still in the backup storage: true, false (definitely gone), or an
 * error when the storage itself cannot be read (an unmounted storage is not a deleted backup).
 */
export async function backupPresent(runner: CommandRunner, target: StorageConfig, chain: string, id: string): Promise<boolean> {
  const snap = chainSnapshot(target, chain, id);
  if (nativeKind(target.driver) === 'zfs') {
    const r = await runner.run(['zfs', 'list', '-H', '-o', 'name', snap], { timeoutMs: 60_000 });
    if (r.code === 0) return true;
    if (/does not exist/i.test(r.stderr)) return false;
    throw new TransferError(`zfs list ${snap}: ${r.stderr.trim()}`);
  }
  if (!target.root || !(await lstat(target.root).then((st) => st.isDirectory(), () => false))) throw new TransferError(`The backup storage's folder ${target.root ?? '(none)'} cannot be read`);
  return chainHas(runner, target, chain, id);
}

/** One stream: producer | counter | consumer. Resolves with the bytes and their SHA-256, or 'base_missing'. */
async function transfer(runner: CommandRunner, req: PullRequest, base: string | null, chain: string): Promise<{ bytes: number; streamChecksum: string } | 'base_missing'> {
  if (!runner.spawn) throw new TransferError('The command runner cannot stream');
  const producer =
    req.source.kind === 'local'
      ? sendArgv(req.source.storage, req.disk, req.snapshot, base)
      : sshArgv(req.source.sshDir, req.source.address, ['send', 'dataset', req.source.storage, req.disk, req.snapshot, ...(base ? [base] : [])]);
  if (nativeKind(req.target.driver) === 'btrfs') await mkdir(chainLocation(req.target, chain), { recursive: true });
  const consumer = receiveArgv(req.target, chain);
  const newChain = base === null;
  const opts = { ...(req.signal ? { signal: req.signal } : {}), timeoutMs: req.timeoutMs ?? 24 * 3600_000 };
  const prod = runner.spawn(producer, { ...opts, stdout: 'stream' });
  const cons = runner.spawn(consumer, { ...opts, stdin: 'pipe' });
  let bytes = 0;
  const hash = createHash('sha256');
  const throttle = req.bwlimit ? new Throttle(req.bwlimit) : null;
  const counter = new Transform({
    highWaterMark: 4 * 1024 * 1024,
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      hash.update(chunk);
      req.onProgress?.(bytes);
      const wait = throttle?.delayFor(chunk.length) ?? 0;
      if (wait > 0) setTimeout(() => cb(null, chunk), wait);
      else cb(null, chunk);
    },
  });
  // The consumer gone (zfs recv refused the stream) closes our end: the producer then gets EPIPE.
  const flow = pipeline(prod.stdout as Readable, counter, cons.stdin as Writable).catch((err: unknown) => err);
  const [p, c] = await Promise.all([settle(prod.done), settle(cons.done), flow]);
  if (p.ok && c.ok && p.value.code === 0 && c.value.code === 0) return { bytes, streamChecksum: hash.digest('hex') };
  await cleanup(runner, req.target, chain, req.snapshot, newChain);
  if (p.ok && p.value.code === EXIT_BASE_MISSING && req.source.kind === 'ssh') return 'base_missing';
  throw new TransferError(failureText(req, producer, consumer, p, c));
}

/**
 * A bandwidth limit as a token bucket over this stream's own clock: `delayFor(n)` says how long
 * to hold a chunk of n bytes so that the bytes so far cross at no more than `bytesPerSecond`
 * (one second's worth may go in a burst).
 */
export class Throttle {
  #start: number | null = null;
  #bytes = 0;
  constructor(
    readonly bytesPerSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {}
  delayFor(n: number): number {
    const t = this.now();
    this.#start ??= t;
    this.#bytes += n;
    const due = this.#start + ((this.#bytes - this.bytesPerSecond) / this.bytesPerSecond) * 1000;
    return Math.max(0, Math.ceil(due - t));
  }
}

type Settled = { ok: true; value: RunResult } | { ok: false; error: Error };

function settle(p: Promise<RunResult>): Promise<Settled> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: error instanceof Error ? error : new Error(String(error)) }),
  );
}

function failureText(req: PullRequest, producer: string[], consumer: string[], p: Settled, c: Settled): string {
  const say = (argv: string[], s: Settled): string => {
    const name = argv[0] === 'ssh' ? `ssh to ${sourceName(req.source)}` : argv.slice(0, 2).join(' ');
    if (!s.ok) return `${name}: ${s.error.message}`;
    const text = s.value.stderr.trim().split('\n').filter(Boolean).slice(-3).join(' / ');
    if (argv[0] === 'ssh' && s.value.code === SSH_FAILED) return `${name} failed (connection lost or refused): ${text || 'no message'}`;
    return `${name} exited ${s.value.code}${text ? `: ${text}` : ''}`;
  };
  const parts = [p, c].map((s, i) => ({ s, argv: i === 0 ? producer : consumer })).filter(({ s }) => !s.ok || s.value.code !== 0);
  return `Transfer of ${req.snapshot} of disk ${req.disk} from ${sourceName(req.source)} failed: ${parts.map(({ s, argv }) => say(argv, s)).join('; ')}`;
}

/**
 * After a failed receive nothing half-made stays: btrfs leaves the partly received subvolume
 * (deleted here); zfs leaves none, but a full stream's new chain dataset without snapshots goes.
 */
async function cleanup(runner: CommandRunner, target: StorageConfig, chain: string, snapshot: string, newChain: boolean): Promise<void> {
  const at = chainLocation(target, chain);
  if (nativeKind(target.driver) === 'btrfs') {
    const partial = join(at, snapshot);
    if (await lstat(partial).then(() => true, () => false)) {
      await runner.run(['btrfs', 'subvolume', 'delete', '--commit-after', partial], { timeoutMs: 5 * 60_000 });
    }
    return;
  }
  if (!newChain) return;
  const r = await runner.run(['zfs', 'list', '-H', '-r', '-t', 'snapshot', '-o', 'name', at], { timeoutMs: 60_000 });
  if (r.code === 0 && r.stdout.trim() === '') await runner.run(['zfs', 'destroy', '-r', at], { timeoutMs: 5 * 60_000 });
}

/**
 * SHA-256 of a backup's image. A btrfs backup is a read-only subvolume, read in place. A zfs backup
 * is read from a temporary clone of its snapshot: never from the chain's mounted dataset, whose
 * file a FUSE mount (zfs-fuse) may still serve from pages cached before the last receive.
 */
export async function imageChecksum(runner: CommandRunner, target: StorageConfig, chain: string, snapshot: string): Promise<string> {
  const hash = createHash('sha256');
  await withBackupImage(runner, target, chain, snapshot, (path) => pipeline(createReadStream(path), hash));
  return hash.digest('hex');
}

/** `zfs send <dataset>/<chain>@<id>` / `btrfs send -q <root>/<chain>/<id>`: a backup as a full stream, every block read. */
export function chainSendArgv(target: StorageConfig, chain: string, snapshot: string): string[] {
  const snap = chainSnapshot(target, chain, snapshot);
  return nativeKind(target.driver) === 'zfs' ? ['zfs', 'send', snap] : ['btrfs', 'send', '-q', snap];
}

/** Runs `use` with the path of a backup's image (see imageChecksum); a zfs clone is destroyed after. */
export async function withBackupImage<T>(runner: CommandRunner, target: StorageConfig, chain: string, snapshot: string, use: (path: string) => Promise<T>): Promise<T> {
  if (nativeKind(target.driver) === 'btrfs') return use(join(chainSnapshot(target, chain, snapshot), IMAGE_NAME));
  const clone = `${chainLocation(target, chain)}-read-${process.pid}-${Date.now()}`;
  const r = await runner.run(['zfs', 'clone', chainSnapshot(target, chain, snapshot), clone], { timeoutMs: 5 * 60_000 });
  if (r.code !== 0) throw new TransferError(`zfs clone of backup ${snapshot}: ${r.stderr.trim()}`);
  try {
    return await use(join(await mountpoint(runner, clone), IMAGE_NAME));
  } finally {
    await destroyWithRetry(runner, clone);
  }
}

/** zfs-fuse answers "dataset is busy" for a moment after a dataset was read. */
async function destroyWithRetry(runner: CommandRunner, dataset: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const r = await runner.run(['zfs', 'destroy', dataset], { timeoutMs: 5 * 60_000 });
    if (r.code === 0 || /does not exist/.test(r.stderr)) return;
    if (!/busy/.test(r.stderr) || attempt >= 8) throw new TransferError(`zfs destroy ${dataset}: ${r.stderr.trim()}`);
    await sleep(100 * 2 ** attempt);
  }
}

async function mountpoint(runner: CommandRunner, dataset: string): Promise<string> {
  const r = await runner.run(['zfs', 'get', '-Hp', '-o', 'value', 'mountpoint', dataset], { timeoutMs: 60_000 });
  const mp = r.stdout.trim();
  if (r.code !== 0 || !mp.startsWith('/')) throw new TransferError(`zfs dataset ${dataset} is not mounted: ${r.stderr.trim()}`);
  return mp;
}

/** The chain and snapshot of a backup from its location (`dataset/chain@is-n`, `root/chain/is-n`); null when it is not one of this storage's. */
export function locateBackup(target: StorageConfig, location: string): { chain: string; snapshot: string } | null {
  const kind = nativeKind(target.driver);
  const m =
    kind === 'zfs'
      ? new RegExp(`^${escape(target.dataset ?? '')}/([^/@]+)@([aei]s-\\d{1,18})$`).exec(location)
      : kind === 'btrfs'
        ? new RegExp(`^${escape(target.root ?? '')}/([^/]+)/([aei]s-\\d{1,18})$`).exec(location)
        : null;
  if (!m || !CHAIN_RE.test(m[1]!)) return null;
  return { chain: m[1]!, snapshot: m[2]! };
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The chain on the backup storage that holds backup snapshot `id` (ids are unique: one backup each), or null. */
export async function findChain(runner: CommandRunner, target: StorageConfig, id: string): Promise<string | null> {
  if (nativeKind(target.driver) === 'zfs') {
    const r = await runner.run(['zfs', 'list', '-H', '-r', '-t', 'snapshot', '-o', 'name', target.dataset!], { timeoutMs: 60_000 });
    for (const line of r.stdout.split('\n')) {
      const found = locateBackup(target, line.trim());
      if (found?.snapshot === id) return found.chain;
    }
    return null;
  }
  for (const chain of await readdir(target.root!).catch(() => [] as string[])) {
    if (CHAIN_RE.test(chain) && (await chainHas(runner, target, chain, id))) return chain;
  }
  return null;
}

/** Removes one backup from its chain, and the chain once it holds none (a missing one is fine). */
export async function removeBackup(runner: CommandRunner, target: StorageConfig, chain: string, snapshot: string): Promise<void> {
  const at = chainLocation(target, chain);
  if (nativeKind(target.driver) === 'btrfs') {
    const path = chainSnapshot(target, chain, snapshot);
    if (await lstat(path).then(() => true, () => false)) {
      const r = await runner.run(['btrfs', 'subvolume', 'delete', '--commit-after', path], { timeoutMs: 5 * 60_000 });
      if (r.code !== 0) throw new TransferError(`btrfs subvolume delete ${path}: ${r.stderr.trim()}`);
    }
    await rmdir(at).catch(() => undefined); // still holds other backups, or gone
    return;
  }
  if (await chainHas(runner, target, chain, snapshot)) {
    const snap = chainSnapshot(target, chain, snapshot);
    const r = await runner.run(['zfs', 'destroy', snap], { timeoutMs: 5 * 60_000 });
    if (r.code !== 0) throw new TransferError(`zfs destroy ${snap}: ${r.stderr.trim()}`);
  }
  const left = await runner.run(['zfs', 'list', '-H', '-r', '-t', 'snapshot', '-o', 'name', at], { timeoutMs: 60_000 });
  if (left.code === 0 && left.stdout.trim() === '') await runner.run(['zfs', 'destroy', '-r', at], { timeoutMs: 5 * 60_000 });
}
