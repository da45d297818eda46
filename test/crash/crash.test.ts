/**
 * A real crash: `esnap serve` runs as a child process, gets SIGKILL while a snapshot task is
 * running on its agent, and is started again on the same database and storage. The restart must
 * fail the interrupted task with the failure cleanup, re-sync the disk, and leave no row pending.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, open, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import pg from 'pg';
import { forEachDb, PG_URL, ADMIN_KEY } from '../helpers/server.js';
import { openDatabase } from '../../src/db/dialect.js';

const BIN = join(process.cwd(), 'dist/src/bin/esnap.js');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

interface Child {
  proc: ChildProcess;
  url: string;
}

async function startServer(env: Record<string, string>): Promise<Child> {
  const port = await freePort();
  const proc = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, ...env, ESNAP_LISTEN: `127.0.0.1:${port}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`server exited: ${log}`);
    try {
      const r = await fetch(`${url}/api/task/`, { headers: { 'ES-API-KEY': ADMIN_KEY } });
      if (r.status === 200) return { proc, url };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not start: ${log}`);
}

async function api(c: Child, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(`${c.url}${path}`, {
    method,
    headers: { 'ES-API-KEY': ADMIN_KEY, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, body: await r.json() };
}

async function kill(c: Child): Promise<void> {
  if (c.proc.exitCode !== null) return;
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill('SIGKILL');
  await exited;
}

forEachDb('crash repair', (kind) => {
  let dir: string;
  let env: Record<string, string>;
  let schema: string | null = null;
  let server: Child | null = null;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-crash-'));
    // The server's own agent (on PostgreSQL it is off unless asked for).
    env = { ESNAP_DATA_DIR: dir, ESNAP_ADMIN_API_KEY: ADMIN_KEY, ESNAP_NODE: 'crashnode', ESNAP_LOCAL_AGENT: '1' };
    if (kind === 'postgres') {
      schema = `crash_${randomBytes(5).toString('hex')}`;
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`CREATE SCHEMA ${schema}`);
      await c.end();
      const u = new URL(PG_URL);
      u.searchParams.set('options', `-c search_path=${schema}`);
      env['ESNAP_DATABASE_URL'] = u.toString();
    }
  });

  afterAll(async () => {
    if (server) await kill(server);
    if (schema) {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.query(`DROP SCHEMA IF EXISTS ${schema}_pgboss CASCADE`);
      await c.end();
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('fails the interrupted create with cleanup and re-syncs the disk after SIGKILL', async () => {
    server = await startServer(env);
    // Register a VM with a disk whose image holds 1 GiB of real data, so the copy takes a while.
    expect((await api(server, 'POST', '/api/vm/crashvm/define/', {})).status).toBe(201);
    const disk = await api(server, 'POST', '/api/vm/crashvm/define/disk/1/', { size: 1024 });
    expect(disk.status).toBe(201);
    const vm = (await api(server, 'GET', '/api/vm/crashvm/define/')).body.result;
    const image = join(dir, 'storage', `${vm.uuid}-disk0`);
    const fh = await open(image, 'r+');
    const chunk = randomBytes(1024 * 1024);
    for (let i = 0; i < 1024; i++) await fh.write(chunk, 0, chunk.length, i * chunk.length);
    await fh.close();

    const created = await api(server, 'POST', '/api/vm/crashvm/snapshot/mid-crash/', {});
    expect(created.status).toBe(201);
    const taskId = created.body.task_id as string;
    // Wait until the agent has started the task, then kill the whole server.
    for (let i = 0; i < 400; i++) {
      const st = await api(server, 'GET', `/api/task/${taskId}/status/`);
      if (st.body.status === 'STARTED') break;
      if (st.body.status !== 'PENDING') throw new Error(`task ended before the crash: ${JSON.stringify(st.body)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await kill(server);
    server = null;

    // While down, the database shows the half state a crash leaves.
    const url = env['ESNAP_DATABASE_URL'] ?? `sqlite:${join(dir, 'esnap.db')}`;
    const opened = openDatabase(url);
    const during = await opened.db.selectFrom('snapshot').select(['status']).where('name', '=', 'mid-crash').execute();
    await opened.db.destroy();
    expect(during).toEqual([{ status: 2 }]);

    server = await startServer(env);
    const st = await api(server, 'GET', `/api/task/${taskId}/status/`);
    expect(st.status).toBe(400);
    expect(st.body.status).toBe('FAILURE');
    expect(st.body.result.message).toMatch(/interrupted/);
    // The repair sync runs as a task of its own; wait for the VM's pending tasks to drain.
    for (let i = 0; i < 200; i++) {
      const t = await api(server, 'GET', '/api/task/');
      if (t.body.length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const list = await api(server, 'GET', '/api/vm/crashvm/snapshot/?full=true');
    for (const s of list.body.result) expect(s.status).toBe(1);
    // No half snapshot is left on storage: what storage holds matches the rows.
    const files = (await readdir(join(dir, 'storage', '.snapshots', `${vm.uuid}-disk0`)).catch(() => [])).filter(
      (f) => !f.startsWith('.') && !f.endsWith('.json'),
    );
    expect(files.sort()).toEqual(list.body.result.map((s: { id: number }) => `es-${s.id}`).sort());
    // The disk lock is free again: a new snapshot works.
    const again = await api(server, 'POST', '/api/vm/crashvm/snapshot/after-crash/', {});
    expect(again.status).toBe(201);
  }, 120_000);
});

