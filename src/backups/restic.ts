/**
 * restic as esnap's type 2 (file) backup engine, on the backup node. One repository per backup
 * storage, in `<storage root>/.esnap-restic` (a dot name is never a disk path); its password is
 * made when the repository is initialised, kept in `<keys dir>/<storage>.restic-password` (mode
 * 0600, in the backup node's data folder, never on the repository's storage, never in the
 * database, a queue message or an API answer) and handed to restic through RESTIC_PASSWORD_FILE.
 *
 * Each backup is one restic snapshot of one image stream (`backup --stdin`), tagged with the DC
 * and the VM; its SHA-256 is computed on the way in and compared on every re-read (`dump`).
 *
 * Locks: backups and dumps share the repository; `forget --prune` takes it alone. Inside this
 * process a reader/writer lock orders them; against other processes restic's own lock decides,
 * and an operation that finds the repository locked waits and tries again (restic 0.14 has no
 * --retry-lock), so a prune never makes a backup fail, nor the other way round. Before each retry
 * it clears stale locks (`restic unlock`): the lock of a restic killed with its agent would
 * otherwise block every prune.
 */
import { createHash, randomBytes } from 'node:crypto';
import { access, chmod, mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, Writable, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageError } from '../storage/driver.js';
import type { CommandRunner, RunResult, SpawnedCommand } from '../storage/runner.js';
import type { DiskWritable, SnapshotReadable } from '../storage/stream.js';
import type { ImageFeed, ImageSource } from './transfer.js';
import { hashGrowingFile, spawnHasher } from './image-hash.js';

export const RESTIC_DIR = '.esnap-restic';
const STORAGE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const RESTIC_ID_RE = /^[0-9a-f]{8,64}$/;
const LOCKED_RE = /unable to create lock|repository is already locked|lock.*already/i;
const NO_SPACE_RE = /no space left on device|disk quota exceeded/i;
const LOCK_RETRY_MS = 2000;
const LOCK_WAIT_MAX_MS = 6 * 3600_000;
const LONG_MS = 24 * 3600_000;
/** Buffer size of the image streams through this process. */
export const STREAM_CHUNK = 4 * 1024 * 1024;

export interface ResticOptions {
  readonly runner: CommandRunner;
  /** The backup storage's root folder (the repository lives below it). */
  readonly storageRoot: string;
  readonly storageName: string;
  /** The backup node's key folder (ESNAP_DATA_DIR/backup-keys). */
  readonly keysDir: string;
}

/** Where the password of a storage's repository is kept (also read by `esnap backup export-key`). */
export function passwordFile(keysDir: string, storageName: string): string {
  if (!STORAGE_NAME_RE.test(storageName)) throw new StorageError('invalid_name', `Invalid storage name: ${JSON.stringify(storageName)}`);
  return join(keysDir, `${storageName}.restic-password`);
}

export function assertResticId(id: string): void {
  if (!RESTIC_ID_RE.test(id)) throw new StorageError('invalid_name', `Invalid restic snapshot id: ${JSON.stringify(id)}`);
}

/** An in-process reader/writer lock per repository: shared for backups and dumps, alone for prune. */
class RwLock {
  #readers = 0;
  #writer = false;
  #waiting: Array<() => void> = [];
  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#writer) await new Promise<void>((r) => this.#waiting.push(r));
    this.#readers++;
    try {
      return await fn();
    } finally {
      this.#readers--;
      this.#wake();
    }
  }
  async alone<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#writer || this.#readers > 0) await new Promise<void>((r) => this.#waiting.push(r));
    this.#writer = true;
    try {
      return await fn();
    } finally {
      this.#writer = false;
      this.#wake();
    }
  }
  #wake(): void {
    const w = this.#waiting;
    this.#waiting = [];
    for (const r of w) r();
  }
}
const LOCKS = new Map<string, RwLock>();
const lockOf = (repo: string): RwLock => {
  let l = LOCKS.get(repo);
  if (!l) LOCKS.set(repo, (l = new RwLock()));
  return l;
};

/** What a definition asks of a backup's transfer (bkpdef `compression`, `bwlimit`). */
export interface ResticBackupOptions {
  /** Danube's 0 none, 1 gzip, 2 bzip2, 3 xz; restic: 0 off, 1 and 2 auto, 3 max (repository v2). */
  readonly compression?: number | null;
  /** Bytes per second (Danube's bwlimit); null: no limit. */
  readonly bwlimit?: number | null;
}

export interface ResticDumpOptions {
  readonly bwlimit?: number | null;
}

/** restic's `--compression` for Danube's compression choice (restic 0.14, repository version 2). */
export function compressionArgs(compression: number | null | undefined): string[] {
  if (compression === null || compression === undefined) return [];
  return ['--compression', compression === 0 ? 'off' : compression === 3 ? 'max' : 'auto'];
}

/**
 * restic's `--limit-upload`/`--limit-download` (KiB/s) for a bwlimit in bytes per second: both,
 * since a backup writes to and a restore reads from the repository; at least 1 KiB/s.
 */
export function limitArgs(bwlimit: number | null): string[] {
  if (bwlimit === null || bwlimit <= 0) return [];
  const kib = String(Math.max(1, Math.floor(bwlimit / 1024)));
  return ['--limit-upload', kib, '--limit-download', kib];
}

interface ImageRun {
  /** restic's result. */
  readonly restic: Promise<RunResult>;
  /** What the sender read and hashed, or why it failed; settles after restic has ended. */
  readonly image: Promise<{ value: { sha256: string; bytes: number }; error: null } | { value: null; error: unknown }>;
}

export interface ResticBackupResult {
  readonly resticId: string;
  readonly checksum: string;
  /** Bytes of the image stream. */
  readonly size: number;
  /** Bytes restic added to the repository (after deduplication and compression). */
  readonly added: number | null;
}

/** A pass-through that hashes and counts the bytes going by. */
export class HashCount extends Transform {
  readonly #hash = createHash('sha256');
  bytes = 0;
  constructor() {
    // Large buffers: an image stream is gigabytes, and 16 KiB steps cost more than the hashing.
    super({ highWaterMark: STREAM_CHUNK });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.#hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  digest(): string {
    return this.#hash.digest('hex');
  }
}

/** ensure() in flight per repository folder. */
const ensuring = new Map<string, Promise<void>>();

export class Restic {
  readonly repo: string;
  readonly #password: string;
  readonly #runner: CommandRunner;
  readonly #keysDir: string;

  constructor(o: ResticOptions) {
    this.repo = join(o.storageRoot, RESTIC_DIR);
    this.#password = passwordFile(o.keysDir, o.storageName);
    this.#keysDir = o.keysDir;
    this.#runner = o.runner;
  }

  #env(): Record<string, string> {
    // LC_ALL=C keeps restic's and the OS's messages stable for the checks below.
    return { RESTIC_REPOSITORY: this.repo, RESTIC_PASSWORD_FILE: this.#password, LC_ALL: 'C', RESTIC_PROGRESS_FPS: '0.016' };
  }

  /** Whether the repository has been made. */
  exists(): Promise<boolean> {
    return exists(join(this.repo, 'config'));
  }

  /** Creates the password and the repository on first use; no-op once both exist. */
  ensure(): Promise<void> {
    // Two first backups at once in this process: one makes the password and the repository, the
    // other waits for it. Two `restic init` at once each wrote a key and a config, and the
    // repository then failed with "config or key … is damaged" (found by the chaos run).
    let p = ensuring.get(this.repo);
    if (!p) {
      p = this.#ensure().finally(() => ensuring.delete(this.repo));
      ensuring.set(this.repo, p);
    }
    return p;
  }

  async #ensure(): Promise<void> {
    const haveRepo = await exists(join(this.repo, 'config'));
    const haveKey = await exists(this.#password);
    if (haveRepo && !haveKey) {
      throw new StorageError('backend', `The restic repository ${this.repo} exists but its password file ${this.#password} is missing (restore it from your safekeeping copy: esnap backup export-key)`);
    }
    if (haveRepo) return;
    await mkdir(this.#keysDir, { recursive: true, mode: 0o700 });
    if (!haveKey) {
      try {
        const fh = await open(this.#password, 'wx', 0o600);
        await fh.writeFile(randomBytes(32).toString('base64url') + '\n');
        await fh.sync();
        await fh.close();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      await chmod(this.#password, 0o600);
    }
    const r = await this.#run(['restic', 'init', '--quiet', '--repository-version', '2']);
    // Two first backups at once: the loser finds the repository made.
    if (r.code !== 0 && !(await exists(join(this.repo, 'config')))) throw resticError('restic init', r);
  }

  /**
   * `restic backup --stdin` of the image `open()` gives (ImageSource), its SHA-256 taken where it
   * costs no copy through this process: a file is restic's stdin itself and is hashed by a second
   * reader of the same file (hasherArgv); a command (the other node's send over SSH) writes into
   * restic's stdin and says what it sent; only a plain stream goes through here, hashed on the
   * way. Tags `dc:<id>`, `vm:<uuid>`. A repository locked by a prune elsewhere: the image is
   * opened again after a wait.
   */
  async backup(open: () => Promise<ImageSource>, filename: string, tags: readonly string[], o: ResticBackupOptions = {}): Promise<ResticBackupResult> {
    return lockOf(this.repo).shared(() =>
      this.#retryLocked(async () => {
        const source = await open();
        const argv = ['restic', 'backup', '--json', '--quiet', ...this.#limits(o), ...compressionArgs(o.compression), '--stdin', '--stdin-filename', filename, ...tags.flatMap((t) => ['--tag', t])];
        let fed: ImageRun;
        try {
          fed = source.kind === 'file' ? await this.#backupFromFile(argv, source) : source.kind === 'command' ? this.#backupFromCommand(argv, source) : this.#backupFromStream(argv, source.readable);
        } catch (err) {
          if (source.kind === 'stream') source.readable.stream.destroy();
          if (source.kind === 'file') await source.close();
          throw err;
        }
        let closeError: unknown = null;
        let ran: [RunResult, Awaited<ImageRun['image']>];
        try {
          ran = await Promise.all([fed.restic, fed.image]);
        } finally {
          // The readers of a file have exited: what the source made for them (a zfs clone) may go
          // now. Failing that fails the backup (the clone would keep the source snapshot).
          if (source.kind === 'file') closeError = await source.close().then(() => null, (err: unknown) => err ?? new Error('the image source did not close'));
        }
        const [r, image] = ran;
        // A source that failed first is the cause, not restic's read error that followed.
        if (r.code !== 0 && image.error) throw new StorageError('backend', `cannot read the snapshot: ${errText(image.error)}`, { cause: image.error });
        if (r.code !== 0) throw resticError('restic backup', r);
        const summary = r.stdout
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((o) => o['message_type'] === 'summary');
        const id = typeof summary?.['snapshot_id'] === 'string' ? summary['snapshot_id'] : null;
        if (!id) throw new StorageError('backend', `restic backup gave no snapshot id: ${r.stdout.slice(0, 300)}`);
        const processed = typeof summary?.['total_bytes_processed'] === 'number' ? summary['total_bytes_processed'] : null;
        // The source failed after its stream ended (its command exited badly), or restic stored
        // other than what the sender counted: a cut image, which the caller forgets (outside this
        // shared lock).
        const cut = image.error ?? closeError ?? (image.value && processed !== null && processed !== image.value.bytes ? new Error(`restic stored ${processed} bytes, the sender sent ${image.value.bytes}`) : null);
        if (cut || !image.value) {
          const why = cut ?? new Error('no checksum');
          throw Object.assign(new StorageError('backend', `cannot read the snapshot: ${errText(why)}`, { cause: why }), { orphanResticId: id });
        }
        const added = typeof summary?.['data_added'] === 'number' ? summary['data_added'] : null;
        return { resticId: id, checksum: image.value.sha256, size: image.value.bytes, added };
      }),
    );
  }

  /** restic's stdin is the file; a hasher reads it beside restic (the page cache serves both). */
  async #backupFromFile(argv: string[], source: Extract<ImageSource, { kind: 'file' }>): Promise<ImageRun> {
    const forRestic = await open(source.path, 'r');
    let forHash: FileHandle | null = null;
    try {
      forHash = await open(source.path, 'r');
      const size = (await forRestic.stat()).size;
      const child = this.#spawn(argv, { stdinFrom: forRestic.fd, stdout: 'capture' });
      const hasher = await spawnHasher(this.#runner, forHash.fd).catch((err: unknown) => {
        child.kill(err instanceof Error ? err : new Error(String(err)));
        throw err;
      });
      return {
        restic: child.done,
        image: settleValue(hasher.digest.then((sha256) => ({ sha256, bytes: size }))),
      };
    } finally {
      // The children hold their own copies; the source itself is closed once they have exited.
      await forRestic.close();
      await forHash?.close();
    }
  }

  /** The sender writes into restic's stdin and reports what it sent. */
  #backupFromCommand(argv: string[], source: Extract<ImageSource, { kind: 'command' }>): ImageRun {
    const child = this.#spawn(argv, { stdin: 'pipe', stdout: 'capture' });
    const stdin = child.stdin!;
    let feed: ImageFeed;
    try {
      feed = source.start(stdin);
    } finally {
      // restic's stdin now belongs to the sender: our copy closed, restic sees the end when it ends.
      (stdin as unknown as { destroy(): void }).destroy();
    }
    // A failing sender kills restic, which must not save what it got so far as the whole image.
    const image = settleValue(feed.done);
    void image.then((s) => s.error && child.kill(s.error instanceof Error ? s.error : new Error(String(s.error))));
    const restic = child.done.catch((err: unknown) => {
      feed.kill(err instanceof Error ? err : new Error(String(err)));
      throw err;
    });
    return { restic, image };
  }

  /** A plain stream through this process, hashed on the way (drivers with no file to hand over). */
  #backupFromStream(argv: string[], source: SnapshotReadable): ImageRun {
    const child = this.#spawn(argv, { stdin: 'pipe', stdout: 'capture' });
    const hash = new HashCount();
    // Before pipeline's own handler closes restic's stdin (an EOF restic would save as the
    // whole image), a failing source kills restic.
    source.stream.once('error', (err) => child.kill(err));
    const fed = settle(pipeline(source.stream, hash, child.stdin as Writable));
    const read = settle(source.done());
    const restic = child.done.catch((err: unknown) => {
      source.stream.destroy();
      throw err;
    });
    const image = Promise.all([fed, read, restic.catch(() => null)]).then(([fedErr, readErr]) => {
      const error = readErr ?? fedErr;
      return error ? { error, value: null } : { error: null, value: { sha256: hash.digest(), bytes: hash.bytes } };
    });
    return { restic, image };
  }

  /**
   * `restic dump <id> /<filename>` into the sink `open()` gives (a disk being restored), or into
   * nothing (a verify). The bytes go from restic to their place without passing through this
   * process where the sink allows it: into the sink's file aside (through `tee`, whose copy the
   * hasher reads),
   * into the other node's receive (the caller commits with the recorded SHA-256, which that side
   * checks; `checksum` is then null), into the hasher (verify). The sink is committed by the
   * caller; on a locked repository it is aborted and opened again after a wait.
   */
  async dump(resticId: string, filename: string, open: (() => Promise<DiskWritable>) | null, o: ResticDumpOptions = {}): Promise<{ checksum: string | null; sink: DiskWritable | null }> {
    assertResticId(resticId);
    return lockOf(this.repo).shared(() =>
      this.#retryLocked(async () => {
        const sink = open ? await open() : null;
        // A verify (no sink) reads the repository itself, not restic's local cache.
        const argv = ['restic', 'dump', '--quiet', ...this.#limits(o), ...(open ? [] : ['--no-cache']), resticId, `/${filename}`];
        try {
          if (!sink) return { checksum: await this.#dumpInto(argv, null), sink };
          if (sink.path !== undefined && sink.createFile) {
            await sink.createFile();
            return { checksum: await this.#dumpInto(argv, sink.path), sink };
          }
          if (sink.pipe !== undefined) {
            const child = this.#spawn(argv, { stdoutTo: sink.pipe, stdout: 'capture' });
            const r = await child.done;
            if (r.code !== 0) throw resticError('restic dump', r);
            return { checksum: null, sink };
          }
          return { checksum: await this.#dumpThrough(argv, sink), sink };
        } catch (err) {
          await sink?.abort();
          throw err;
        }
      }),
    );
  }

  /**
   * `restic dump > <file>`, then the file hashed and flushed at once (path null: `restic dump |
   * hasher`, a verify): nothing passes through this process. Resolves with the SHA-256 of what
   * the file holds, i.e. of what restic wrote.
   *
   * restic's stdout is the file itself, as in a bare `restic dump > file`: the former `restic dump
   * | tee <file> | hasher` made every byte pass two more pipes and tee's 8 KiB reads and writes,
   * and put the hashing beside restic on the CPU while restic decrypts (2 GiB restore: 67 % of
   * bare `restic dump`). The hash reads the file back from the page cache while restic writes it
   * (hashGrowingFile), then the file is flushed (which the switch needs anyway: its own fsync then
   * finds nothing to write). Hashing the finished file beside its fsync cost 2 GiB at ~1.3 GiB/s
   * after the dump (73 % of bare `restic dump` at load 1.2, bench/README.md).
   */
  async #dumpInto(argv: string[], path: string | null): Promise<string> {
    if (path === null) {
      const hasher = await spawnHasher(this.#runner);
      let child: SpawnedCommand;
      try {
        child = this.#spawn(argv, { stdoutTo: hasher.command.stdin!, stdout: 'capture' });
      } catch (err) {
        hasher.command.kill(err as Error);
        throw err;
      } finally {
        (hasher.command.stdin as unknown as { destroy(): void } | null)?.destroy();
      }
      const [r, digest] = await Promise.all([child.done, settleValue(hasher.digest)]);
      if (r.code !== 0) throw resticError('restic dump', r);
      if (digest.error) throw digest.error;
      return digest.value!;
    }
    // The file the sink made (empty, with the disk's mode): opened without O_CREAT, so a file
    // gone meanwhile is an error rather than a new file with another mode.
    const fh = await open(path, 'r+');
    try {
      const done = this.#spawn(argv, { stdoutTo: fh.fd, stdout: 'capture' }).done;
      const [r, digest] = await Promise.all([done, hashGrowingFile(fh, done)]);
      if (r.code !== 0) {
        const text = r.stderr.trim().slice(0, 500);
        if (NO_SPACE_RE.test(text)) throw new StorageError('no_space', `writing the restored image failed: ${text}`);
        throw resticError('restic dump', r);
      }
      await fh.sync();
      return digest;
    } finally {
      await fh.close();
    }
  }

  /** A sink with only a stream: through this process, hashed on the way. */
  async #dumpThrough(argv: string[], sink: DiskWritable): Promise<string> {
    const child = this.#spawn(argv, { stdout: 'stream' });
    const hash = new HashCount();
    const piped = settle(pipeline(child.stdout as Readable, hash, sink.stream));
    const r = await child.done;
    const pipeErr = await piped;
    if (r.code !== 0) throw resticError('restic dump', r);
    if (pipeErr) throw pipeErr;
    return hash.digest();
  }

  #limits(o: { bwlimit?: number | null }): string[] {
    return limitArgs(o.bwlimit ?? null);
  }

  /** Removes restic snapshots and prunes their data; takes the repository alone. */
  async forget(resticIds: readonly string[]): Promise<void> {
    resticIds.forEach(assertResticId);
    if (resticIds.length === 0) return;
    await lockOf(this.repo).alone(() =>
      this.#retryLocked(async () => {
        const r = await this.#run(['restic', 'forget', '--quiet', '--prune', ...resticIds]);
        // Already gone (a retried delete): restic says it found no such snapshot.
        if (r.code !== 0 && !/no matching ID found|unable to find snapshot/i.test(r.stderr)) throw resticError('restic forget', r);
      }),
    );
  }

  /** Ids of the repository's snapshots with their tags (repair and listing). */
  async snapshots(): Promise<Array<{ id: string; tags: string[]; paths: string[] }>> {
    return lockOf(this.repo).shared(() =>
      this.#retryLocked(async () => {
        const r = await this.#run(['restic', 'snapshots', '--json', '--no-lock']);
        if (r.code !== 0) throw resticError('restic snapshots', r);
        const list = JSON.parse(r.stdout || '[]') as Array<{ id: string; tags?: string[]; paths?: string[] }>;
        return list.map((s) => ({ id: s.id, tags: s.tags ?? [], paths: s.paths ?? [] }));
      }),
    );
  }

  async #retryLocked<T>(fn: (attempt: number) => Promise<T>): Promise<T> {
    const began = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (!(err instanceof ResticLocked) || Date.now() - began > LOCK_WAIT_MAX_MS) throw err;
        // A restic killed with SIGKILL (a crashed agent's child) leaves its lock behind, and restic
        // 0.14 waits on it for ever; `unlock` removes only stale locks (process gone on this host,
        // or older than 30 min), never a live one.
        await this.#run(['restic', 'unlock']).catch(() => undefined);
        await sleep(LOCK_RETRY_MS);
      }
    }
  }

  #run(argv: string[]): Promise<RunResult> {
    return this.#runner.run(argv, { env: this.#env(), timeoutMs: LONG_MS }).catch((err: unknown) => {
      throw new StorageError('backend', `cannot run restic: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
  }

  #spawn(argv: string[], o: { stdin?: 'pipe'; stdout: 'stream' | 'capture'; stdinFrom?: number; stdoutTo?: number | NodeJS.WritableStream }): SpawnedCommand {
    if (!this.#runner.spawn) throw new StorageError('backend', 'this command runner cannot stream');
    return this.#runner.spawn(argv, { ...o, env: this.#env(), timeoutMs: LONG_MS });
  }

  /** The password, for `esnap backup export-key`. */
  static async exportKey(keysDir: string, storageName: string): Promise<string> {
    return (await readFile(passwordFile(keysDir, storageName), 'utf8')).trim();
  }
}

class ResticLocked extends StorageError {}

function resticError(what: string, r: RunResult): StorageError {
  const text = r.stderr.trim().split('\n').slice(-5).join(' ').slice(0, 1000) || `exit code ${r.code}`;
  if (LOCKED_RE.test(r.stderr)) return new ResticLocked('busy', `${what}: the repository is locked: ${text}`);
  if (NO_SPACE_RE.test(r.stderr)) return new StorageError('no_space', `Backup storage is full: ${what} failed: ${text}`);
  return new StorageError('backend', `${what} failed (exit ${r.code}): ${text}`);
}

/** The promise's value or error; never rejects. */
function settleValue<T>(p: Promise<T>): Promise<{ value: T; error: null } | { value: null; error: unknown }> {
  return p.then(
    (value) => ({ value, error: null }),
    (error: unknown) => ({ value: null, error: error ?? new Error('failed') }),
  );
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The promise's error, or null once it resolved; never rejects. */
function settle(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => null,
    (err: unknown) => err ?? new Error('failed'),
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
