/**
 * The SHA-256 of an image. Of a stream, without the image passing through this process:
 * `openssl dgst -sha256` (OpenSSL's SHA-256 uses the CPU's SHA instructions, about 2.5 times
 * coreutils' `sha256sum` here), or `sha256sum` where openssl is not installed, reading a pipe end
 * handed to its stdin (CommandRunner.spawn's stdinFrom/stdoutTo: `zfs send | hasher`,
 * `restic dump | hasher`). Of a file another process is still writing (`restic dump > file`):
 * hashGrowingFile, here, reading it as it grows.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageError } from '../storage/driver.js';
import type { CommandRunner, SpawnedCommand } from '../storage/runner.js';

const LONG_MS = 24 * 3600_000;
const HEX_RE = /^([0-9a-f]{64})\b/;
let chosen: Promise<string[]> | null = null;

/** The hashing command, chosen once: openssl when it runs, else coreutils' sha256sum. */
export function hasherArgv(runner: CommandRunner): Promise<string[]> {
  chosen ??= runner.run(['openssl', 'version'], { timeoutMs: 30_000 }).then(
    (r) => (r.code === 0 ? ['openssl', 'dgst', '-sha256', '-r'] : ['sha256sum']),
    () => ['sha256sum'],
  );
  return chosen;
}

function digestOf(argv: readonly string[], r: { code: number; stdout: string; stderr: string }): string {
  const m = HEX_RE.exec(r.stdout.trim());
  if (r.code !== 0 || !m) throw new StorageError('backend', `${argv[0]} could not hash the image (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`);
  return m[1]!;
}

/**
 * Starts the hashing command reading its stdin from `from` (a file descriptor, or a pipe end of
 * another command; default: a pipe whose write end is `stdin` of the result, for a producer's
 * stdoutTo). `digest` resolves once it has read to the end.
 */
export async function spawnHasher(runner: CommandRunner, from?: number): Promise<{ command: SpawnedCommand; digest: Promise<string> }> {
  if (!runner.spawn) throw new StorageError('backend', 'this command runner cannot stream');
  const argv = await hasherArgv(runner);
  const command = runner.spawn(argv, { ...(from === undefined ? { stdin: 'pipe' as const } : { stdinFrom: from }), stdout: 'capture', timeoutMs: LONG_MS });
  const digest = command.done.then((r) => digestOf(argv, r));
  digest.catch(() => undefined); // observed by the caller
  return { command, digest };
}

const FOLLOW_CHUNK = 4 * 1024 * 1024;
const FOLLOW_POLL_MS = 5;
const FLUSH_EVERY = 256 * 1024 * 1024;

/**
 * SHA-256 (hex) of a file that another process writes from start to end (`restic dump > file`),
 * read while it grows, so the hash runs beside the writer instead of after it. For a sequential
 * writer every byte below the file's size is final (the kernel moves the size only past bytes
 * already copied), so what was read never changes; once `written` settles (the writer has
 * exited, either way) the rest is read to the end. Reads are positional: the writer's offset in
 * the shared file description does not move. Here, not in the hashing command: that one reads to
 * an end of file, which a growing file reaches early.
 */
export async function hashGrowingFile(fh: FileHandle, written: Promise<unknown>): Promise<string> {
  let ended = false;
  const mark = (): void => {
    ended = true;
  };
  written.then(mark, mark);
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(FOLLOW_CHUNK);
  let pos = 0;
  // Write-back while the writer runs: a flush of what is written so far every FLUSH_EVERY bytes
  // (one at a time, not awaited here), so the caller's final fsync finds little left to write.
  let flushed = 0;
  let flushing: Promise<void> | null = null;
  for (;;) {
    const endedBefore = ended;
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead > 0) {
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      if (!endedBefore && flushing === null && pos - flushed >= FLUSH_EVERY) {
        flushed = pos;
        flushing = fh.datasync().then(
          () => void (flushing = null),
          () => void (flushing = null),
        );
      }
    } else if (endedBefore) {
      await flushing;
      return hash.digest('hex');
    } else {
      await sleep(FOLLOW_POLL_MS);
    }
  }
}
