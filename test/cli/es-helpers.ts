/**
 * Running the BUILT es (dist/src/bin/es.js) as scripts do: a child process with plain node, an
 * environment of its own (no ES_* leaking in from the test runner) and a private TMPDIR, so the
 * token store `esdc.session` belongs to the test. Also tiny HTTP servers for what a real esnap
 * cannot be made to do (a 500, a stream that never ends, a broken connection): process-edge fakes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const ES_BIN = join(ROOT, 'dist/src/bin/es.js');

/**
 * Fails when the built client is missing, and warns when a source looks newer than its build.
 * Only a warning: an incremental tsc does not rewrite outputs whose source content is unchanged,
 * so a touched file can look newer without being stale.
 */
export function assertBuilt(): void {
  if (!existsSync(ES_BIN)) throw new Error(`${ES_BIN} is missing: run npm run build (npm test does it)`);
  const sources = [join(ROOT, 'src/bin/es.ts'), ...readdirSync(join(ROOT, 'src/cli')).map((f) => join(ROOT, 'src/cli', f))];
  for (const src of sources.filter((f) => f.endsWith('.ts'))) {
    const out = src.replace(join(ROOT, 'src'), join(ROOT, 'dist/src')).replace(/\.ts$/, '.js');
    if (!existsSync(out)) throw new Error(`${out} is missing: run npm run build (npm test does it)`);
    if (statSync(out).mtimeMs < statSync(src).mtimeMs) console.warn(`${out} may be older than ${src}: run npm run build`);
  }
}

export interface EsResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface EsOptions {
  /** Variables on top of PATH, HOME and TMPDIR. */
  readonly env?: Record<string, string>;
  readonly tmp?: string;
  readonly timeoutMs?: number;
  /** Called with the child once it runs (to send it signals). */
  readonly onSpawn?: (child: ChildProcess, output: { stderr(): string; stdout(): string }) => void;
}

export function makeTmp(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'es-cli-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function runEs(args: readonly string[], opts: EsOptions = {}): Promise<EsResult> {
  const env: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/', ...(opts.tmp ? { TMPDIR: opts.tmp } : {}), ...opts.env };
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [ES_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`es ${args.join(' ')} did not end within ${opts.timeoutMs ?? 20000} ms; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 20000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
    opts.onSpawn?.(child, { stderr: () => stderr, stdout: () => stdout });
  });
}

/** The JSON es printed on stdout. */
export function out(r: EsResult): any {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`stdout is not JSON (exit ${r.code}): ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

export interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly rawHeaders: string[];
  readonly body: string;
}

export interface FakeServer {
  readonly url: string;
  readonly requests: Recorded[];
  close(): Promise<void>;
}

/** A local HTTP server whose answers the test writes; it records every request. */
export async function fakeServer(handler: (req: Recorded, res: ServerResponse, raw: IncomingMessage) => void): Promise<FakeServer> {
  const requests: Recorded[] = [];
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const rec = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(parts).toString('utf8') };
      requests.push(rec);
      handler(rec, res, req);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Waits until `check` is true, polling every 20 ms (for output of a child process). */
export async function until(check: () => boolean, timeoutMs = 10000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
