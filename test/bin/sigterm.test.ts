/**
 * A graceful stop with a real signal: `node dist/src/bin/esnap.js serve` runs a snapshot task on its
 * own agent (slowed down by test/cluster/slow-storage.mjs, so it runs for a few seconds) and gets
 * SIGTERM in the middle of it.
 *
 * - Grace long enough: the open ES-STREAM ends at once with the pending `201` line, a request sent
 *   after the signal is refused (connection refused, or 503), the task runs to its end (SUCCESS,
 *   recorded after the signal), and the process exits 0.
 * - Grace shorter than the task: the process exits 1 after the grace with the task left STARTED;
 *   the next start fails it with the failure cleanup and re-syncs, so no pending row is left.
 *
 * The same two cases for `esnap agent` in cluster mode (PostgreSQL): the agent drains its running
 * job before it exits 0; cut off, it leaves the job active, and the restarted agent reports it
 * interrupted so a server fails the task.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forEachDb, ADMIN_KEY, testDatabases } from '../helpers/server.js';
import { startServe, type EsnapServe } from '../helpers/esnap-process.js';
import { openDatabase } from '../../src/db/dialect.js';
import { newServeData, type ServeData } from '../helpers/serve-data.js';
import { makeNodeVm, newClusterDb, spawnAgent, startClusterServer, waitAgentStarted, waitFor, waitNodeOnline, waitTask, type ChildAgent, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';

/** Waits until no task is open (the list of running tasks is empty). */
async function waitIdle(c: EsnapServe): Promise<void> {
  await waitFor('no open task', async () => (await c.api('GET', '/api/task/')).body.length === 0, 60_000, 50);
}

/**
 * An `ES-STREAM: es` request kept open: resolves with the response once its headers are in. Its
 * connection is kept alive afterwards, as Danube clients and proxies do: the server must not wait
 * for such a connection to time out (72 s) before it can stop.
 */
function openStream(c: EsnapServe, method: string, path: string): Promise<{ res: IncomingMessage; body: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port: c.port, method, path, agent: new HttpAgent({ keepAlive: true }), headers: { 'ES-API-KEY': ADMIN_KEY, 'ES-STREAM': 'es', 'Content-Type': 'application/json' } },
      (res) => {
        const body = new Promise<string>((ok, fail) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => ok(text));
          res.on('error', fail);
          res.on('aborted', () => fail(new Error('stream aborted')));
        });
        resolve({ res, body });
      },
    );
    req.on('error', reject);
    req.end('{}');
  });
}

/** A VM with a 16 MiB disk, ready for snapshots. */
async function makeVm(c: EsnapServe, hostname: string): Promise<void> {
  expect((await c.api('POST', `/api/vm/${hostname}/define/`, {})).status).toBe(201);
  expect((await c.api('POST', `/api/vm/${hostname}/define/disk/1/`, { size: 16 })).status).toBe(201);
  await waitIdle(c);
}

async function waitStarted(c: EsnapServe, taskId: string): Promise<void> {
  await waitFor(
    `task ${taskId} STARTED`,
    async () => {
      const st = await c.api('GET', `/api/task/${taskId}/status/`);
      if (st.body.status !== 'PENDING' && st.body.status !== 'STARTED') throw new Error(`task ended too early: ${JSON.stringify(st.body)}`);
      return st.body.status === 'STARTED';
    },
    30_000,
    20,
  );
}

forEachDb('SIGTERM', (kind) => {
  let data: ServeData;
  let dir: string;
  let env: Record<string, string>;
  let server: EsnapServe | null = null;

  /** The task and snapshot rows, read straight from the database while no server runs. */
  async function rows(taskId: string, snapshot: string) {
    const opened = openDatabase(data.dbUrl);
    try {
      const task = await opened.db.selectFrom('task').select(['state', 'finished']).where('id', '=', taskId).executeTakeFirst();
      const snaps = await opened.db.selectFrom('snapshot').select(['status']).where('name', '=', snapshot).execute();
      return { task, snaps };
    } finally {
      await opened.db.destroy();
    }
  }

  beforeAll(async () => {
    data = await newServeData(kind, { prefix: 'esnap-sigterm-', node: 'stopnode' });
    ({ dir, env } = data);
  });

  afterAll(async () => {
    await server?.stop('SIGKILL');
    await data?.cleanup();
  });

  it('lets the running task finish, ends the open stream with the pending status, refuses new requests, exits 0', async () => {
    server = await startServe({ ...env, ESNAP_STOP_GRACE_S: '60' }, { slowMs: 500 });
    const s = server;
    await makeVm(s, 'stopvm');
    const stream = await openStream(s, 'POST', '/api/vm/stopvm/snapshot/during-stop/');
    expect(stream.res.statusCode).toBe(201);
    expect(stream.res.headers['es_stream']).toBe('True');
    const taskId = stream.res.headers['es_task_id'] as string;
    await waitStarted(s, taskId);

    const signalled = new Date();
    s.proc.kill('SIGTERM');
    // The stream ends at once with the 201 line and the pending status: the task still runs.
    const text = (await stream.body).replace(/^ +/, '');
    const nl = text.indexOf('\n');
    expect(text.slice(0, nl)).toBe('201');
    const final = JSON.parse(text.slice(nl + 1)) as { task_id: string; status: string };
    expect(final).toMatchObject({ task_id: taskId, status: 'STARTED' });
    expect(s.output()).toContain('stopping: waiting up to 60 s for 1 running tasks');

    // A request after the signal is refused, and what it asked for never happens.
    const late = await fetch(`${s.url}/api/vm/stopvm/snapshot/after-signal/`, {
      method: 'POST',
      headers: { 'ES-API-KEY': ADMIN_KEY, 'Content-Type': 'application/json' },
      body: '{}',
    }).then(
      (r) => r.status,
      (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
    );
    // 503 from a server still answering; a refused connection once it stopped listening; or, when
    // fetch reused a pooled keep-alive connection that the stop just dropped, a closed socket.
    expect([503, 'ECONNREFUSED', 'UND_ERR_SOCKET']).toContain(late);

    expect(await s.exited).toBe(0);
    expect(s.output()).toContain('stopped cleanly');
    expect(s.output()).not.toContain('grace period over');
    server = null;

    const after = await rows(taskId, 'during-stop');
    expect(after.task?.state).toBe('SUCCESS');
    // Finished after the signal: the stop waited for it.
    expect(Date.parse(after.task!.finished!)).toBeGreaterThan(signalled.getTime());
    expect(after.snaps).toEqual([{ status: 1 }]);
    expect((await rows(taskId, 'after-signal')).snaps).toEqual([]);

    // Started again, the server has nothing to repair and reports the same.
    server = await startServe(env);
    const st = await server.api('GET', `/api/task/${taskId}/status/`);
    expect(st.status).toBe(200);
    expect(st.body.status).toBe('SUCCESS');
    expect(server.output()).not.toContain('interrupted');
    server.proc.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    server = null;
  }, 120_000);

  it('exits 1 when the grace runs out, leaving the task STARTED; the next start fails it and re-syncs', async () => {
    server = await startServe({ ...env, ESNAP_STOP_GRACE_S: '0.5' }, { slowMs: 1000 });
    const s = server;
    await makeVm(s, 'cutvm');
    const created = await s.api('POST', '/api/vm/cutvm/snapshot/cut-off/', {});
    expect(created.status).toBe(201);
    const taskId = created.body.task_id as string;
    await waitStarted(s, taskId);

    s.proc.kill('SIGTERM');
    expect(await s.exited).toBe(1);
    expect(s.output()).toContain('stopping: waiting up to 0.5 s for 1 running tasks');
    expect(s.output()).toContain('grace period over, exiting with 1 tasks still running');
    server = null;

    // Cut off: the task is still STARTED and its snapshot row pending.
    const during = await rows(taskId, 'cut-off');
    expect(during.task?.state).toBe('STARTED');
    expect(during.snaps).toEqual([{ status: 2 }]);

    server = await startServe(env);
    const st = await server.api('GET', `/api/task/${taskId}/status/`);
    expect(st.status).toBe(400);
    expect(st.body.status).toBe('FAILURE');
    expect(st.body.result.message).toBe('Task was interrupted (the agent stopped while it ran)');
    // The repair sync runs as a task of its own.
    await waitIdle(server);
    const list = await server.api('GET', '/api/vm/cutvm/snapshot/?full=true');
    expect(list.status).toBe(200);
    for (const snap of list.body.result) expect(snap.status).toBe(1);
    expect(list.body.result.map((x: { name: string }) => x.name)).not.toContain('cut-off');
    // Storage holds no half snapshot: what it has matches the rows.
    const vm = (await server.api('GET', '/api/vm/cutvm/define/')).body.result as { uuid: string };
    const files = (await readdir(join(dir, 'storage', '.snapshots', `${vm.uuid}-disk0`)).catch(() => [] as string[])).filter(
      (f) => !f.startsWith('.') && !f.endsWith('.json'),
    );
    expect(files.sort()).toEqual(list.body.result.map((x: { id: number }) => `es-${x.id}`).sort());
    // The disk lock is free again.
    expect((await server.api('POST', '/api/vm/cutvm/snapshot/after-cut/', {})).status).toBe(201);
    await waitIdle(server);
    server.proc.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    server = null;
  }, 120_000);
});

// Cluster mode exists only on PostgreSQL.
if (testDatabases().includes('postgres')) {
  describe('SIGTERM: esnap agent [postgres]', () => {
    let db: ClusterDb;
    let dir: string;
    let s: ClusterServer;
    let agent: ChildAgent | null = null;
    const spec = () => ({ node: 'stopagent', root: join(dir, 'stopagent') });

    const startAgent = async (env: Record<string, string>, slowMs = 0): Promise<ChildAgent> => {
      const a = await spawnAgent(db, spec(), { slowMs, env });
      await waitAgentStarted(a);
      await waitNodeOnline(s, 'stopagent');
      agent = a;
      return a;
    };
    const taskState = async (taskId: string) => (await s.runtime.ctx.tasks.get(taskId))?.state;
    /** An agent with `grace` on storage slowed by `slowMs`, sent SIGTERM once its snapshot task of `hostname` has STARTED. */
    const sigtermMidTask = async (grace: string, slowMs: number, hostname: string, snapshot: string) => {
      const a = await startAgent({ ESNAP_STOP_GRACE_S: grace }, slowMs);
      const vm = await makeNodeVm(s, 'stopagent', hostname, { disks: [4] });
      const r = await s.req('POST', `/api/vm/${hostname}/snapshot/${snapshot}`, { body: {} });
      expect(r.status).toBe(201);
      const taskId = r.body.task_id as string;
      await waitFor('task STARTED', async () => (await taskState(taskId)) === 'STARTED', 30_000, 20);
      a.proc.kill('SIGTERM');
      return { a, vm, taskId };
    };

    beforeAll(async () => {
      db = await newClusterDb();
      dir = await mkdtemp(join(tmpdir(), 'esnap-sigterm-agent-'));
      s = await startClusterServer(db);
    });
    afterAll(async () => {
      await agent?.kill('SIGKILL');
      await s?.close();
      await db?.drop();
      await rm(dir, { recursive: true, force: true });
    });

    it('drains the running job, then exits 0', async () => {
      const { a, taskId } = await sigtermMidTask('60', 500, 'agentvm', 'drained');
      expect(await a.exited).toBe(0);
      expect(a.output()).toContain('stopping: waiting up to 60 s for 1 running tasks');
      expect(a.output()).toContain('stopped cleanly');
      const st = await waitTask(s, taskId);
      expect(st.body.status).toBe('SUCCESS');
      expect((await s.req('GET', '/api/vm/agentvm/snapshot/drained')).body.result.status).toBe(1);
    }, 90_000);

    it('cut off by the grace: exits 1 with the job active; the restarted agent has the task failed', async () => {
      const { a, vm, taskId } = await sigtermMidTask('0.5', 1000, 'cutvm', 'cut');
      expect(await a.exited).toBe(1);
      expect(a.output()).toContain('grace period over, exiting with 1 tasks still running');
      expect(await taskState(taskId)).toBe('STARTED');
      const jobs = await db.query(`SELECT state FROM ${db.bossSchema}.job WHERE name = 'esnap.node.stopagent' AND data->>'taskId' = $1`, [taskId]);
      expect(jobs).toEqual([{ state: 'active' }]);

      await startAgent({});
      const st = await waitTask(s, taskId);
      expect(st.status).toBe(400);
      expect(st.body.result.message).toBe('Task was interrupted (the agent stopped while it ran)');
      await waitFor('no open task', async () => {
        const open = await s.runtime.ctx.db.selectFrom('task').select('id').where('state', 'in', ['PENDING', 'STARTED']).execute();
        return open.length === 0;
      }, 30_000, 20);
      // The pending row is gone (the create never finished: nothing to find on storage either).
      expect((await s.req('GET', '/api/vm/cutvm/snapshot/cut')).status).toBe(404);
      const rows = await s.runtime.ctx.db.selectFrom('snapshot').select(['name', 'status']).where('vm_uuid', '=', vm.uuid).execute();
      expect(rows).toEqual([]);
    }, 90_000);
  });
}
