/**
 * The real `esnap` command as a child process (dist/src/bin/esnap.js, built by tsc), with an
 * environment free of the caller's ESNAP_* variables so only what a test passes applies.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const ESNAP_BIN = join(process.cwd(), 'dist/src/bin/esnap.js');

/** This process's environment without ESNAP_*, plus `extra`. */
export function esnapEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ESNAP_')) env[k] = v;
  return { ...env, ...extra };
}

/** A TCP port free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** Runs `esnap <args>` to its end (for commands that end: `db backup`, or a `serve` that refuses to start). */
export async function runEsnap(args: readonly string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [ESNAP_BIN, ...args], { env: esnapEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  return { code, stdout, stderr };
}
