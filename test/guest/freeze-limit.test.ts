/**
 * ESNAP_FREEZE_LIMIT_S reaches the freeze: a real `esnap serve` (local agent) and a real
 * `esnap agent` (cluster mode) with a limit of 0.3 s take a snapshot that lasts seconds (storage
 * slowed down by test/cluster/slow-storage.mjs) of a running VM whose guest agent is scripted on a
 * unix socket (test/helpers/fake-guest-agent.ts). The guest is thawed at the configured limit while
 * the snapshot still runs; the snapshot is kept, flagged `(filesystem freeze failed)` with the limit named in the detail. With
 * the default of 60 s the same snapshot would stay frozen throughout and succeed plainly.
 *
 * Also: a stop (SIGTERM) whose ESNAP_STOP_GRACE_S runs out while a guest is frozen thaws it before
 * the process exits, since the limit's timer dies with the process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_KEY } from '../helpers/server.js';
import { startServe, type EsnapServe } from '../helpers/esnap-process.js';
import { FakeGuestAgent } from '../helpers/fake-guest-agent.js';
import { useTempDirs } from '../helpers/temp-dirs.js';
import {
  makeNodeVm,
  newClusterDb,
  spawnAgent,
  startClusterServer,
  waitAgentStarted,
  waitFor,
  waitNodeOnline,
  waitTask,
  type ChildAgent,
  type ClusterDb,
  type ClusterServer,
} from '../cluster/cluster.helpers.js';

const SLOW_MS = 500;
const LIMIT_S = '0.3';
const LIMIT_DETAIL = "msg='Filesystem freeze failed (thawed at the freeze limit of 0.3 s before the snapshot finished)'";

/** The freeze commands the guest got, without the syncs. */
function freezeCommands(g: FakeGuestAgent): string[] {
  return g.events.filter((e) => e !== 'guest-sync');
}

/** `esnap serve` on slow storage, on a SQLite database in `dir`, with `env` added. */
function startSlowServe(dir: string, env: Record<string, string>): Promise<EsnapServe> {
  return startServe(
    {
      ESNAP_DATA_DIR: join(dir, 'data'),
      ESNAP_DATABASE_URL: `sqlite:${join(dir, 'esnap.db')}`,
      ESNAP_ADMIN_API_KEY: ADMIN_KEY,
      ESNAP_NODE: 'freezenode',
      ...env,
    },
    { slowMs: SLOW_MS },
  );
}

/** A running VM whose guest agent listens on `socket`, with one 4 MiB disk. */
async function makeRunningVm(s: EsnapServe, hostname: string, socket: string): Promise<void> {
  expect((await s.api('POST', `/api/vm/${hostname}/define/`, { qga_socket: socket })).status).toBe(201);
  expect((await s.api('POST', `/api/vm/${hostname}/define/disk/1/`, { size: 4 })).status).toBe(201);
  expect((await s.api('PUT', `/api/vm/${hostname}/status/start/`)).status).toBe(200);
  await waitFor('no open task', async () => (await s.api('GET', '/api/task/')).body.length === 0, 30_000, 50);
}

describe('ESNAP_FREEZE_LIMIT_S with esnap serve', () => {
  // Registered first, so the folders are removed after the servers and guests below have stopped.
  const tempDir = useTempDirs();
  const guests: FakeGuestAgent[] = [];
  const servers: EsnapServe[] = [];
  const setUp = async (env: Record<string, string>): Promise<{ s: EsnapServe; guest: FakeGuestAgent; socket: string }> => {
    const dir = await tempDir('esnap-flimit-');
    const socket = join(dir, 'qga.sock');
    const guest = await FakeGuestAgent.start(socket);
    guests.push(guest);
    const s = await startSlowServe(dir, env);
    servers.push(s);
    return { s, guest, socket };
  };

  afterAll(async () => {
    for (const s of servers) await s.stop('SIGKILL');
    for (const g of guests) await g.stop();
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
    expect(s.output()).toContain('freeze limit reached');
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
    expect(s.output()).toContain('grace period over, exiting with 1 tasks still running');
    expect(s.output()).toContain('thawed guests still frozen before exiting');
    expect(freezeCommands(guest)).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
    expect(guest.frozen).toBe(false);
  }, 60_000);
});

describe('ESNAP_FREEZE_LIMIT_S with esnap agent (cluster)', () => {
  let db: ClusterDb;
  let dir: string;
  let s: ClusterServer;
  let agent: ChildAgent | null = null;
  let guest: FakeGuestAgent;

  beforeAll(async () => {
    db = await newClusterDb();
    dir = await mkdtemp(join(tmpdir(), 'esnap-flimit-agent-'));
    guest = await FakeGuestAgent.start(join(dir, 'qga.sock'));
    s = await startClusterServer(db);
    agent = await spawnAgent(db, { node: 'fnode', root: join(dir, 'fnode') }, { slowMs: SLOW_MS, env: { ESNAP_FREEZE_LIMIT_S: LIMIT_S } });
    await waitAgentStarted(agent);
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
