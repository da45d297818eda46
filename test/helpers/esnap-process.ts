/**
 * The real `esnap` command as a child process (dist/src/bin/esnap.js, built by tsc), with an
 * environment free of the caller's ESNAP_* variables so only what a test passes applies.
 *
 * Example:
 *   const s = await startServe({ ESNAP_DATA_DIR: dir, ESNAP_ADMIN_API_KEY: ADMIN_KEY });
 *   expect((await s.api('GET', '/api/vm/')).status).toBe(200);
 *   expect(await s.stop()).toBe(0);
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const ESNAP_BIN = join(process.cwd(), 'dist/src/bin/esnap.js');
/** Preload (node --import) that slows storage down, so a test can act while a task runs. */
export const SLOW_STORAGE = join(process.cwd(), 'test/cluster/slow-storage.mjs');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** This process's environment without ESNAP_*, plus `extra`. */
export function esnapEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ESNAP_')) env[k] = v;
  return { ...env, ...extra };
}

/** A TCP port free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no free port'))));
    });
  });
}

export interface SpawnOptions {
  /** `node --import <file>` before the command (fault injection, e.g. SLOW_STORAGE). */
  preload?: string;
  /** With a preload of SLOW_STORAGE: how long each slowed storage step waits. */
  slowMs?: number;
  /** Run in a process group of its own, so that `killGroup()` hits it and everything it started in that group. */
  group?: boolean;
}

export interface EsnapProcess {
  readonly proc: ChildProcess;
  /** stdout and stderr as they arrived, interleaved. */
  output(): string;
  /**
   * The exit code once the process has ended and its output is complete ('close', not 'exit':
   * stdout and stderr may still hold data when 'exit' fires).
   */
  readonly exited: Promise<number | null>;
  alive(): boolean;
  /** Sends `signal` if the process still runs, and waits for its end. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** SIGKILL to the process group (needs `group: true`), as a crash or `kill -9 -<pgid>` would; waits for the process's end. */
  killGroup(): Promise<number | null>;
}

/**
 * Process groups of their own outlive this process: when it ends while they run (a test that timed
 * out never reached its clean-up, or the run was stopped with SIGTERM/SIGINT), they go with it.
 * Without this a timed-out chaos run left two servers and two agents running for over an hour.
 */
const liveGroups = new Set<number>();
let reaping = false;
function reapOnExit(): void {
  if (reaping) return;
  reaping = true;
  const reap = (): void => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    liveGroups.clear();
  };
  process.once('exit', reap);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      reap();
      // Then the signal's usual end.
      process.kill(process.pid, sig);
    });
  }
}

/** Starts `esnap <args>` with `env` (on top of esnapEnv); does not wait for anything. */
export function spawnEsnap(args: readonly string[], env: Record<string, string>, opts: SpawnOptions = {}): EsnapProcess {
  const preload = opts.preload ?? (opts.slowMs ? SLOW_STORAGE : undefined);
  const argv = [...(preload ? ['--import', preload] : []), ESNAP_BIN, ...args];
  const slow: Record<string, string> = opts.slowMs ? { ESNAP_TEST_SLOW_STORAGE_MS: String(opts.slowMs) } : {};
  const proc = spawn(process.execPath, argv, { env: esnapEnv({ ...env, ...slow }), stdio: ['ignore', 'pipe', 'pipe'], detached: opts.group ?? false });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('close', (code) => r(code)));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  if (opts.group && proc.pid !== undefined) {
    liveGroups.add(proc.pid);
    reapOnExit();
    void exited.then(() => liveGroups.delete(proc.pid!));
  }
  return {
    proc,
    output: () => out,
    exited,
    alive,
    stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (alive()) {
        proc.kill(signal);
        // A stopped process (SIGSTOP) acts on SIGTERM only once it runs again.
        if (signal !== 'SIGKILL') proc.kill('SIGCONT');
      }
      return exited;
    },
    killGroup() {
      if (!opts.group) throw new Error('killGroup() needs spawnEsnap(…, { group: true })');
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
      return exited;
    },
  };
}

/** Waits until `text` is in the output; fails with the output if the process ends first or `ms` passes. */
export async function waitOutput(p: EsnapProcess, text: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!p.output().includes(text)) {
    if (!p.alive()) {
      await p.exited;
      if (p.output().includes(text)) return;
      throw new Error(`esnap exited (code ${p.proc.exitCode}) before printing "${text}": ${p.output()}`);
    }
    if (Date.now() > end) throw new Error(`esnap did not print "${text}" within ${ms} ms: ${p.output()}`);
    await sleep(20);
  }
}

export interface ApiReply {
  status: number;
  body: any;
}

export interface EsnapServe extends EsnapProcess {
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** A JSON call with the ESNAP_ADMIN_API_KEY the process was started with. */
  api(method: string, path: string, body?: unknown): Promise<ApiReply>;
}

/** The port in the start-up line `{"address":"http://127.0.0.1:<port>",…,"msg":"esnap listening"}`. */
export function listeningPort(output: string): number {
  const line = output.split('\n').find((l) => l.includes('"esnap listening"'));
  const m = line ? /"address":"https?:\/\/[^"]*:(\d+)"/.exec(line) : null;
  if (!m) throw new Error(`no listening address in the output: ${output}`);
  return Number(m[1]);
}

/**
 * `esnap serve` on loopback: on `opts.port`, or on port 0 (the system picks a free one, which the
 * start-up line reports, so no other process can take it in between); resolves once it prints
 * "esnap listening", fails with its output if it exits first.
 */
export async function startServe(env: Record<string, string>, opts: SpawnOptions & { port?: number } = {}): Promise<EsnapServe> {
  const p = spawnEsnap(['serve'], { ESNAP_LISTEN: `127.0.0.1:${opts.port ?? 0}`, ...env }, opts);
  let port: number;
  try {
    await waitOutput(p, 'esnap listening');
    port = listeningPort(p.output());
  } catch (err) {
    p.proc.kill('SIGKILL');
    throw err;
  }
  const url = `http://127.0.0.1:${port}`;
  const key = env['ESNAP_ADMIN_API_KEY'];
  const api = async (method: string, path: string, body?: unknown): Promise<ApiReply> => {
    const r = await fetch(`${url}${path}`, {
      method,
      headers: { ...(key ? { 'ES-API-KEY': key } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: await r.json() };
  };
  return { ...p, port, url, api };
}

export interface EsnapResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr, interleaved as they arrived. */
  output: string;
}

/**
 * Runs `esnap <args>` to its end (for commands that end: `db backup`, or a `serve`/`agent` that
 * refuses to start). Still running after `timeoutMs`, it is killed and the call fails.
 */
export async function runEsnap(args: readonly string[], env: Record<string, string>, timeoutMs = 30_000): Promise<EsnapResult> {
  const p = spawnEsnap(args, env);
  let stdout = '';
  let stderr = '';
  p.proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  p.proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      p.proc.kill('SIGKILL');
      reject(new Error(`esnap ${args.join(' ')} still ran after ${timeoutMs} ms: ${p.output()}`));
    }, timeoutMs);
  });
  try {
    const code = await Promise.race([p.exited, timedOut]);
    return { code, stdout, stderr, output: p.output() };
  } finally {
    clearTimeout(timer);
  }
}
