/**
 * ESNAP_FREEZE_LIMIT_S reaches the freeze: a real `esnap serve` (local agent) and a real
 * `esnap agent` (cluster mode) with a limit of 0.3 s take a snapshot that lasts seconds (storage
 * slowed down by test/cluster/slow-storage.mjs) of a running VM whose guest agent is scripted on a
 * unix socket here. The guest is thawed at the configured limit while the snapshot still runs; the
 * snapshot is kept, flagged `(filesystem freeze failed)` with the limit named in the detail. With
 * the default of 60 s the same snapshot would stay frozen throughout and succeed plainly.
 *
 * Also: a stop (SIGTERM) whose ESNAP_STOP_GRACE_S runs out while a guest is frozen thaws it before
 * the process exits, since the limit's timer dies with the process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_KEY } from '../helpers/server.js';
import {
  makeNodeVm,
  newClusterDb,
  spawnAgent,
  startClusterServer,
  waitFor,
  waitNodeOnline,
  waitTask,
  type ChildAgent,
  type ClusterDb,
  type ClusterServer,
} from '../cluster/cluster.helpers.js';

const BIN = join(process.cwd(), 'dist/src/bin/esnap.js');
const SLOW = join(process.cwd(), 'test/cluster/slow-storage.mjs');
const SLOW_MS = '500';
const LIMIT_S = '0.3';
const LIMIT_DETAIL = "msg='Filesystem freeze failed (thawed at the freeze limit of 0.3 s before the snapshot finished)'";

/** A guest agent that freezes and thaws on request, recording what it got and whether it is frozen. */
class ScriptedGuestAgent {
  readonly events: string[] = [];
  frozen = false;
  readonly #conns = new Set<Socket>();
  private constructor(private readonly server: Server) {}

  static async start(path: string): Promise<ScriptedGuestAgent> {
    const server = createServer();
    const agent = new ScriptedGuestAgent(server);
    server.on('connection', (s) => agent.#serve(s));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return agent;
  }

  #serve(s: Socket): void {
    this.#conns.add(s);
    s.on('close', () => this.#conns.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        // 0xFF resets qemu-ga's parser before a guest-sync.
        const line = buf.slice(0, nl).replace(/^\xff+/, '');
        buf = buf.slice(nl + 1);
        const req = JSON.parse(line) as { execute: string; arguments?: { id?: number } };
        this.events.push(req.execute);
        let ret: unknown;
        if (req.execute === 'guest-sync') ret = req.arguments?.id ?? 0;
        else if (req.execute === 'guest-fsfreeze-freeze') {
          this.frozen = true;
          ret = 2;
        } else if (req.execute === 'guest-fsfreeze-thaw') {
          ret = this.frozen ? 2 : 0;
          this.frozen = false;
        } else ret = null;
        s.write(`${JSON.stringify({ return: ret })}\n`);
      }
    });
  }

  async stop(): Promise<void> {
    for (const c of this.#conns) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The freeze commands the guest got, without the syncs. */
function freezeCommands(g: ScriptedGuestAgent): string[] {
  return g.events.filter((e) => e !== 'guest-sync');
}

interface Serve {
  proc: ChildProcess;
  log(): string;
  exited: Promise<number | null>;
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
}

/** `esnap serve` on slow storage, on a SQLite database in `dir`, with `env` added. */
async function startServe(dir: string, env: Record<string, string>): Promise<Serve> {
  const port = await new Promise<number>((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, ['--import', SLOW, BIN, 'serve'], {
    env: {
      ...process.env,
      ESNAP_DATA_DIR: join(dir, 'data'),
      ESNAP_DATABASE_URL: `sqlite:${join(dir, 'esnap.db')}`,
      ESNAP_ADMIN_API_KEY: ADMIN_KEY,
      ESNAP_NODE: 'freezenode',
      ESNAP_LISTEN: `127.0.0.1:${port}`,
      ESNAP_TEST_SLOW_STORAGE_MS: SLOW_MS,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  await waitFor('esnap listening', async () => {
    if (proc.exitCode !== null) throw new Error(`server exited: ${log}`);
    return log.includes('esnap listening');
  });
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const r = await fetch(`${url}${path}`, {
      method,
      headers: { 'ES-API-KEY': ADMIN_KEY, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: await r.json() };
  };
  return { proc, log: () => log, exited, api };
}

/** A running VM whose guest agent listens on `socket`, with one 4 MiB disk. */
async function makeRunningVm(s: Serve, hostname: string, socket: string): Promise<void> {
  expect((await s.api('POST', `/api/vm/${hostname}/define/`, { qga_socket: socket })).status).toBe(201);
  expect((await s.api('POST', `/api/vm/${hostname}/define/disk/1/`, { size: 4 })).status).toBe(201);
  expect((await s.api('PUT', `/api/vm/${hostname}/status/start/`)).status).toBe(200);
  await waitFor('no open task', async () => (await s.api('GET', '/api/task/')).body.length === 0, 30_000, 50);
}

describe('ESNAP_FREEZE_LIMIT_S with esnap serve', () => {
  const dirs: string[] = [];
  const guests: ScriptedGuestAgent[] = [];
  const servers: Serve[] = [];
  const setUp = async (env: Record<string, string>): Promise<{ s: Serve; guest: ScriptedGuestAgent; socket: string }> => {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-flimit-'));
    dirs.push(dir);
    const socket = join(dir, 'qga.sock');
    const guest = await ScriptedGuestAgent.start(socket);
    guests.push(guest);
    const s = await startServe(dir, env);
    servers.push(s);
    return { s, guest, socket };
  };

  afterAll(async () => {
    for (const s of servers) {
      if (s.proc.exitCode === null && s.proc.signalCode === null) {
        s.proc.kill('SIGKILL');
        await s.exited;
      }
    }
    for (const g of guests) await g.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('thaws the guest at the configured limit while the snapshot runs, and flags the snapshot', async () => {
    const { s, guest, socket } = await setUp({ ESNAP_FREEZE_LIMIT_S: LIMIT_S });
    await makeRunningVm(s, 'frozen', socket);
    const created = await s.api('POST', '/api/vm/frozen/snapshot/limited/', { fsfreeze: true });
    expect(created.status).toBe(201);
    const taskId = created.body.task_id as string;
    await waitFor('thaw at the limit', async () => guest.events.includes('guest-fsfreeze-thaw'), 20_000);
    expect(guest.frozen).toBe(false);

    let st: { status: number; body: any } | null = null;
    await waitFor('the snapshot task', async () => {
      st = await s.api('GET', `/api/task/${taskId}/status/`);
      return st.status !== 201;
    }, 30_000, 50);
    // The limit hit before the snapshot had finished (withFreeze says so only then).
    expect(st!.body).toEqual({
      task_id: taskId,
      status: 'SUCCESS',
      result: { returncode: 0, message: 'Snapshot successfully created (filesystem freeze failed)', detail: LIMIT_DETAIL },
    });
    // Frozen once, thawed once (at the limit, not again at the end).
    expect(freezeCommands(guest)).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
    const snap = await s.api('GET', '/api/vm/frozen/snapshot/limited/');
    expect(snap.body.result).toMatchObject({ status: 1, fsfreeze: false });
    expect(s.log()).toContain('freeze limit reached');
  }, 60_000);

  it('a stop whose grace runs out thaws the guest it holds frozen before exiting', async () => {
    // The default limit (60 s) is far away: only the stop can thaw the guest in time.
    const { s, guest, socket } = await setUp({ ESNAP_STOP_GRACE_S: '0.5' });
    await makeRunningVm(s, 'stopfrozen', socket);
    const created = await s.api('POST', '/api/vm/stopfrozen/snapshot/held/', { fsfreeze: true });
    expect(created.status).toBe(201);
    await waitFor('the freeze', async () => guest.frozen, 20_000);
    s.proc.kill('SIGTERM');
    expect(await s.exited).toBe(1);
    expect(s.log()).toContain('grace period over, exiting with 1 tasks still running');
    expect(s.log()).toContain('thawed guests still frozen before exiting');
    expect(freezeCommands(guest)).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
    expect(guest.frozen).toBe(false);
  }, 60_000);
});

describe('ESNAP_FREEZE_LIMIT_S with esnap agent (cluster)', () => {
  let db: ClusterDb;
  let dir: string;
  let s: ClusterServer;
  let agent: ChildAgent | null = null;
  let guest: ScriptedGuestAgent;

  beforeAll(async () => {
    db = await newClusterDb();
    dir = await mkdtemp(join(tmpdir(), 'esnap-flimit-agent-'));
    guest = await ScriptedGuestAgent.start(join(dir, 'qga.sock'));
    s = await startClusterServer(db);
    agent = await spawnAgent(db, { node: 'fnode', root: join(dir, 'fnode') }, {
      preload: SLOW,
      env: { ESNAP_FREEZE_LIMIT_S: LIMIT_S, ESNAP_TEST_SLOW_STORAGE_MS: SLOW_MS },
    });
    await waitFor('agent start', async () => {
      if (agent!.proc.exitCode !== null) throw new Error(`agent exited: ${agent!.output()}`);
      return agent!.output().includes('agent started');
    });
    await waitNodeOnline(s, 'fnode');
  });

  afterAll(async () => {
    await agent?.kill('SIGKILL');
    await s?.close();
    await db?.drop();
    await guest?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('thaws the guest at the configured limit while the snapshot runs, and flags the snapshot', async () => {
    await makeNodeVm(s, 'fnode', 'frozen2', { disks: [4], status: 2, qga: join(dir, 'qga.sock') });
    const created = await s.req('POST', '/api/vm/frozen2/snapshot/limited', { body: { fsfreeze: true } });
    expect(created.status).toBe(201);
    const taskId = created.body.task_id as string;
    await waitFor('thaw at the limit', async () => guest.events.includes('guest-fsfreeze-thaw'), 20_000);
    expect(guest.frozen).toBe(false);
    const st = await waitTask(s, taskId, 30_000);
    expect(st.body).toEqual({
      task_id: taskId,
      status: 'SUCCESS',
      result: { returncode: 0, message: 'Snapshot successfully created (filesystem freeze failed)', detail: LIMIT_DETAIL },
    });
    expect(freezeCommands(guest)).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
    expect((await s.req('GET', '/api/vm/frozen2/snapshot/limited')).body.result).toMatchObject({ status: 1, fsfreeze: false });
  }, 60_000);
});
