/** `esnap serve` as a user starts it: a fresh data dir, the key printed once, SQLite under the data dir. */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';

const BIN = join(process.cwd(), 'dist/src/bin/esnap.js');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function serve(dataDir: string, port: number): Promise<{ proc: ChildProcess; out: () => string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, ESNAP_DATA_DIR: dataDir, ESNAP_LISTEN: `127.0.0.1:${port}`, ESNAP_NODE: 'testnode' };
  delete env['ESNAP_ADMIN_API_KEY'];
  delete env['ESNAP_DATABASE_URL'];
  delete env['ESNAP_STORAGES'];
  const proc = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 200 && !out.includes('esnap listening'); i++) {
    if (proc.exitCode !== null) throw new Error(out);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, out: () => out };
}

async function stop(proc: ChildProcess): Promise<number | null> {
  const done = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  proc.kill('SIGTERM');
  return done;
}

describe('esnap serve', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('starts on a fresh data dir, prints the admin key once, and stops on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-serve-'));
    dirs.push(dir);
    const port = await freePort();
    const a = await serve(dir, port);
    const m = /API key for user "admin"[^\n]*\n\n {2}(\S+)/.exec(a.out());
    expect(m).not.toBeNull();
    const key = m![1]!;
    const nodes = await fetch(`http://127.0.0.1:${port}/api/node/testnode/storage/?full=true`, { headers: { 'ES-API-KEY': key } });
    expect(nodes.status).toBe(200);
    const body = (await nodes.json()) as { result: Array<{ name: string; driver: string }> };
    expect(body.result.map((s) => [s.name, s.driver])).toEqual([['default', 'file']]);
    expect((await stat(join(dir, 'esnap.db'))).isFile()).toBe(true);
    expect((await stat(join(dir, 'storage'))).isDirectory()).toBe(true);
    expect(await stop(a.proc)).toBe(0);

    const b = await serve(dir, port);
    expect(b.out()).not.toContain('API key for user');
    expect((await fetch(`http://127.0.0.1:${port}/api/vm/`, { headers: { 'ES-API-KEY': key } })).status).toBe(200);
    expect(await stop(b.proc)).toBe(0);
  }, 60_000);

  it('exits with status 1 and a clear message on a bad configuration', async () => {
    const proc = spawn(process.execPath, [BIN, 'serve'], {
      env: { ...process.env, ESNAP_STORAGES: 'not json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((r) => proc.once('exit', r));
    expect(code).toBe(1);
    expect(err).toContain('ESNAP_STORAGES is not valid JSON');
  });
});
