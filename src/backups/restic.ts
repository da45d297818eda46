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
 * --retry-lock), so a prune never makes a backup fail, nor the other way round. Before each new
 * try it runs `restic unlock`, which removes stale locks only (a lock made on this host by a
 * process that is gone, or older than 30 minutes): a restic killed with its agent (SIGKILL to the
 * process group) leaves its lock behind, and restic never ignores one by itself, so without this a
 * prune waited behind a dead backup's lock for hours, and every backup behind the prune.
 */
import { createHash, randomBytes } from 'node:crypto';
import { access, chmod, mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, Writable, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageError } from '../storage/driver.js';
import type { CommandRunner, RunResult, SpawnedCommand } from '../storage/runner.js';
import type { DiskWritable, SnapshotReadable } from '../storage/stream.js';

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
  async ensure(): Promise<void> {
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
    const r = await this.#run(['restic', 'init', '--quiet']);
    // Two first backups at once: the loser finds the repository made.
    if (r.code !== 0 && !(await exists(join(this.repo, 'config')))) throw resticError('restic init', r);
  }

  /**
   * `restic backup --stdin` of the stream `open()` gives, hashed on the way in; tags `dc:<id>`,
   * `vm:<uuid>`. A repository locked by a prune elsewhere: the stream is opened again after a wait.
   */
  async backup(open: () => Promise<SnapshotReadable>, filename: string, tags: readonly string[]): Promise<ResticBackupResult> {
    return lockOf(this.repo).shared(() =>
      this.#retryLocked(async () => {
        const source = await open();
        const argv = ['restic', 'backup', '--json', '--quiet', '--stdin', '--stdin-filename', filename, ...tags.flatMap((t) => ['--tag', t])];
        let child: SpawnedCommand;
        try {
          child = this.#spawn(argv, { stdin: 'pipe', stdout: 'capture' });
        } catch (err) {
          source.stream.destroy();
          throw err;
        }
        const hash = new HashCount();
        // Before pipeline's own handler closes restic's stdin (an EOF restic would save as the
        // whole image), a failing source kills restic.
        source.stream.once('error', (err) => child.kill(err));
        const fed = settle(pipeline(source.stream, hash, child.stdin as Writable));
        const read = settle(source.done());
        const r = await child.done.catch((err: unknown) => {
          source.stream.destroy();
          throw err;
        });
        const [fedErr, readErr] = await Promise.all([fed, read]);
        // A source that failed first is the cause, not restic's read error that followed.
        const sourceErr = readErr ?? fedErr;
        if (r.code !== 0 && sourceErr) throw new StorageError('backend', `cannot read the snapshot: ${sourceErr instanceof Error ? sourceErr.message : String(sourceErr)}`, { cause: sourceErr });
        if (r.code !== 0) throw resticError('restic backup', r);
        const summary = r.stdout
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((o) => o['message_type'] === 'summary');
        const id = typeof summary?.['snapshot_id'] === 'string' ? summary['snapshot_id'] : null;
        if (!id) throw new StorageError('backend', `restic backup gave no snapshot id: ${r.stdout.slice(0, 300)}`);
        // The source failed after its stream ended (its command exited badly): restic saved a cut
        // image, which the caller forgets (outside this shared lock).
        const cut = readErr ?? fedErr;
        if (cut) throw Object.assign(new StorageError('backend', `cannot read the snapshot: ${cut instanceof Error ? cut.message : String(cut)}`, { cause: cut }), { orphanResticId: id });
        const added = typeof summary?.['data_added'] === 'number' ? summary['data_added'] : null;
        return { resticId: id, checksum: hash.digest(), size: hash.bytes, added };
      }),
    );
  }

  /**
   * `restic dump <id> /<filename>` into the sink `open()` gives (a disk being restored), or into
   * nothing (a verify); resolves with the SHA-256 and byte count read. The sink is committed by
   * the caller; on a locked repository it is aborted and opened again after a wait.
   */
  async dump(resticId: string, filename: string, open: (() => Promise<DiskWritable>) | null): Promise<{ checksum: string; size: number; sink: DiskWritable | null }> {
    assertResticId(resticId);
    return lockOf(this.repo).shared(() =>
      this.#retryLocked(async () => {
        const sink = open ? await open() : null;
        let child: SpawnedCommand;
        try {
          // A verify (no sink) reads the repository itself, not restic's local cache.
          child = this.#spawn(['restic', 'dump', '--quiet', ...(open ? [] : ['--no-cache']), resticId, `/${filename}`], { stdout: 'stream' });
        } catch (err) {
          await sink?.abort();
          throw err;
        }
        const hash = new HashCount();
        const out = child.stdout as Readable;
        const piped = settle(sink ? pipeline(out, hash, sink.stream) : pipeline(out, hash, new Writable({ write: (_c, _e, cb) => cb() })));
        try {
          const r = await child.done;
          const pipeErr = await piped;
          if (r.code !== 0) throw resticError('restic dump', r);
          if (pipeErr) throw pipeErr;
        } catch (err) {
          await sink?.abort();
          throw err;
        }
        return { checksum: hash.digest(), size: hash.bytes, sink };
      }),
    );
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
        // Stale locks only (see the header); a live holder's lock stays, and we wait for it.
        await this.#run(['restic', 'unlock', '--quiet']).catch(() => undefined);
        await sleep(LOCK_RETRY_MS);
      }
    }
  }

  #run(argv: string[]): Promise<RunResult> {
    return this.#runner.run(argv, { env: this.#env(), timeoutMs: LONG_MS }).catch((err: unknown) => {
      throw new StorageError('backend', `cannot run restic: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
  }

  #spawn(argv: string[], o: { stdin?: 'pipe'; stdout: 'stream' | 'capture' }): SpawnedCommand {
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
