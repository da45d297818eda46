/**
 * The SHA-256 of an image without the image passing through this process: `openssl dgst -sha256`
 * (OpenSSL's SHA-256 uses the CPU's SHA instructions, about 2.5 times coreutils' `sha256sum`
 * here), or `sha256sum` where openssl is not installed. Either reads a file (a snapshot file,
 * beside restic reading the same file) or a pipe end handed to its stdin (CommandRunner.spawn's
 * stdinFrom/stdoutTo: `restic dump | tee <file> | hasher`, `zfs send | hasher`).
 */
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

/** SHA-256 (hex) of a file, read by the hashing command. */
export async function hashFile(runner: CommandRunner, path: string): Promise<string> {
  const argv = [...(await hasherArgv(runner)), path];
  return digestOf(argv, await runner.run(argv, { timeoutMs: LONG_MS }));
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
