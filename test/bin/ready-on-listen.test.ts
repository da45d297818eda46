/**
 * `esnap serve` listens only once it can work: its local agent has registered the node with the
 * storages' sizes before the port opens (createRuntime does all of that before the bin listens).
 * The real process is started and its port is probed from the first instant, without waiting for
 * the "esnap listening" line: the very first answer of /readyz must be 200, and the very first
 * answer of the node's storage list must carry sizes.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import pg from 'pg';
import { PG_URL, testDatabases } from '../helpers/server.js';

const BIN = join(process.cwd(), 'dist/src/bin/esnap.js');
const KEY = 'ready-on-listen-key-0123456789';
const NODE = 'readynode';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function pgAdmin(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

interface FirstAnswer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

/** Requests `url` until the first answer of any kind (a refused connection is no answer). */
async function firstAnswer(url: string, headers: Record<string, string>, alive: () => boolean): Promise<FirstAnswer> {
  const end = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(url, { headers });
      return { status: res.status, body: (await res.json()) as unknown };
    } catch (err) {
      if (!alive()) throw new Error('esnap serve exited before answering', { cause: err });
      if (Date.now() > end) throw new Error(`no answer from ${url}`, { cause: err });
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

describe('esnap serve: ready when it listens', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  for (const kind of testDatabases()) {
    it(`the first /readyz is 200 and the first storage list has sizes [${kind}]`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'esnap-ready-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ESNAP_DATA_DIR: dir,
        ESNAP_NODE: NODE,
        ESNAP_ADMIN_API_KEY: KEY,
        ESNAP_LOCAL_AGENT: '1',
      };
      delete env['ESNAP_STORAGES'];
      delete env['ESNAP_DATABASE_URL'];
      if (kind === 'postgres') {
        const schema = `t_${randomBytes(6).toString('hex')}`;
        await pgAdmin(`CREATE SCHEMA ${schema}`);
        cleanups.push(async () => {
          await pgAdmin(`DROP SCHEMA IF EXISTS ${schema}_pgboss CASCADE`);
          await pgAdmin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        });
        const u = new URL(PG_URL);
        u.searchParams.set('options', `-c search_path=${schema}`);
        env['ESNAP_DATABASE_URL'] = u.toString();
      }
      const port = await freePort();
      env['ESNAP_LISTEN'] = `127.0.0.1:${port}`;
      const proc = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      cleanups.push(async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      });
      const alive = (): boolean => proc.exitCode === null && proc.signalCode === null;
      const base = `http://127.0.0.1:${port}`;
      try {
        // Both probes start before the process can listen; each keeps its own first answer.
        const [ready, storages] = await Promise.all([
          firstAnswer(`${base}/readyz`, {}, alive),
          firstAnswer(`${base}/api/node/${NODE}/storage/?full=true`, { 'ES-API-KEY': KEY }, alive),
        ]);
        expect(ready.status).toBe(200);
        expect(ready.body.status).toBe('ready');
        expect(ready.body.checks.agent).toEqual({ ok: true, node: NODE });
        expect(storages.status).toBe(200);
        expect(storages.body.result).toHaveLength(1);
        const [s] = storages.body.result as Array<{ name: string; size: number | null; size_free: number | null }>;
        expect(s!.name).toBe('default');
        expect(s!.size).toEqual(expect.any(Number));
        expect(s!.size_free).toEqual(expect.any(Number));
        expect(s!.size!).toBeGreaterThan(0);
        expect(s!.size_free!).toBeGreaterThan(0);
        expect(s!.size_free!).toBeLessThanOrEqual(s!.size!);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- esnap serve output ---\n${out}`, { cause: err });
      }
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
    }, 60_000);
  }
});
