/**
 * A cluster on loopback for tests: esnap servers (createRuntime on PostgreSQL, no local agent) and
 * agents (in-process AgentRuntimes, or real `esnap agent` child processes), all on one PostgreSQL
 * schema of their own (`t_<hex>`, pg-boss in `t_<hex>_pgboss`).
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import pg from 'pg';
import { createRuntime, silentLogger, type Runtime } from '../../src/runtime.js';
import { AgentRuntime } from '../../src/agent/agent-runtime.js';
import { bossSchemaFor } from '../../src/queue/pgboss.queue.js';
import type { Logger } from '../../src/app-context.js';
import type { CommandRunner } from '../../src/storage/runner.js';
import { ADMIN_KEY, PG_URL, httpClient, type Reply, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { sleep, spawnEsnap, waitOutput, type EsnapProcess } from '../helpers/esnap-process.js';

export { sleep };

export async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 20_000, every = 25): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

export interface ClusterDb {
  readonly baseUrl: string;
  readonly schema: string;
  readonly bossSchema: string;
  /** The URL an agent gets: esnap's schema named in `options`, so it finds pg-boss's. */
  agentUrl(user?: string): string;
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

export async function newClusterDb(baseUrl = PG_URL): Promise<ClusterDb> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const admin = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> => {
    const c = new pg.Client({ connectionString: baseUrl });
    await c.connect();
    try {
      return (await c.query<R>(text, values)).rows;
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE SCHEMA ${schema}`);
  const bossSchema = bossSchemaFor(schema);
  return {
    baseUrl,
    schema,
    bossSchema,
    agentUrl(user?: string) {
      const u = new URL(baseUrl);
      if (user) {
        u.username = user;
        u.password = '';
      }
      u.searchParams.set('options', `-c search_path=${schema}`);
      return u.toString();
    },
    query: admin,
    async drop() {
      await admin(`DROP SCHEMA IF EXISTS ${bossSchema} CASCADE`);
      await admin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
}

export interface ClusterServer extends TestServer {
  readonly runtime: Runtime;
}

export interface ClusterServerOptions {
  agentDeadlineS?: number;
  nodeSilenceS?: number;
  streamTimeoutS?: number;
  log?: Logger;
}

export async function startClusterServer(db: ClusterDb, opts: ClusterServerOptions = {}): Promise<ClusterServer> {
  const runtime = await createRuntime({
    databaseUrl: db.baseUrl,
    searchPath: db.schema,
    adminApiKey: ADMIN_KEY,
    node: 'unused',
    storages: [],
    localAgent: false,
    streamTimeoutS: opts.streamTimeoutS ?? 60,
    agentDeadlineS: opts.agentDeadlineS ?? 120,
    nodeSilenceS: opts.nodeSilenceS ?? 30,
    scheduler: false,
    ...(opts.log ? { log: opts.log } : {}),
  });
  const address = await runtime.app.listen({ host: '127.0.0.1', port: 0 });
  return clientFor(address.replace(/\/$/, ''), runtime);
}

/** test/helpers/server.ts's HTTP helpers, for a server started here. */
export function clientFor(url: string, runtime: Runtime, node = 'node1'): ClusterServer {
  return { url, runtime, storageRoot: '', node, ...httpClient(url), close: () => runtime.close() };
}

export interface AgentSpec {
  readonly node: string;
  /** Folder holding the node's `default` file storage. */
  readonly root: string;
}

export async function startAgent(db: ClusterDb, spec: AgentSpec, opts: { heartbeatS?: number; log?: Logger; runner?: CommandRunner } = {}): Promise<AgentRuntime> {
  await mkdir(spec.root, { recursive: true });
  return AgentRuntime.start({
    databaseUrl: db.agentUrl(),
    bossSchema: db.bossSchema,
    node: spec.node,
    storages: [{ name: 'default', driver: 'file', root: spec.root }],
    heartbeatS: opts.heartbeatS ?? 1,
    log: opts.log ?? silentLogger,
    ...(opts.runner ? { runner: opts.runner } : {}),
  });
}

export interface ChildAgent extends EsnapProcess {
  /** Sends `signal` (SIGKILL by default) if the agent still runs, and waits for its end. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** `node dist/src/bin/esnap.js agent` for a node; `preload` adds `--import <file>` (fault injection). */
export async function spawnAgent(
  db: ClusterDb,
  spec: AgentSpec,
  opts: { user?: string; env?: Record<string, string>; preload?: string; slowMs?: number } = {},
): Promise<ChildAgent> {
  await mkdir(spec.root, { recursive: true });
  const p = spawnEsnap(
    ['agent'],
    {
      ESNAP_DATABASE_URL: db.agentUrl(opts.user),
      ESNAP_NODE: spec.node,
      ESNAP_STORAGES: JSON.stringify([{ name: 'default', driver: 'file', root: spec.root }]),
      ESNAP_NODE_SILENCE_S: '3',
      // Its own data dir (a sibling of the storage): agents sharing the default ./data reap each
      // other's running storage commands when one restarts (run/children, src/storage/child-records.ts).
      ESNAP_DATA_DIR: `${spec.root}-agent-data`,
      ...(opts.env ?? {}),
    },
    { ...(opts.preload ? { preload: opts.preload } : {}), ...(opts.slowMs ? { slowMs: opts.slowMs } : {}) },
  );
  return {
    ...p,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      await p.stop(signal);
    },
  };
}

/** Waits until a spawned agent says it has started (fails with its output if it exits first). */
export async function waitAgentStarted(agent: ChildAgent, ms = 20_000): Promise<void> {
  await waitOutput(agent, 'agent started', ms);
}

/** Waits until a server has the node registered and online (after an agent's start). */
export async function waitNodeOnline(s: ClusterServer, node: string, ms = 20_000): Promise<void> {
  await waitFor(`node ${node} online`, async () => {
    const row = await s.runtime.ctx.db.selectFrom('node').select('status').where('hostname', '=', node).executeTakeFirst();
    return row?.status === 2;
  }, ms);
}

/** A VM on a node (its disks are files in the node's storage folder). */
export async function makeNodeVm(s: ClusterServer, node: string, hostname: string, opts: Parameters<typeof makeVm>[2] = {}): Promise<VmFixture> {
  return makeVm({ ...s, node } as TestServer, hostname, opts);
}

/** Polls a task's status until it has ended. */
export async function waitTask(s: ClusterServer, taskId: string, ms = 30_000): Promise<Reply> {
  return waitFor(`task ${taskId}`, async () => {
    const r = await s.req('GET', `/api/task/${taskId}/status`);
    return r.status === 201 ? null : r;
  }, ms, 50);
}

export { silentLogger };
