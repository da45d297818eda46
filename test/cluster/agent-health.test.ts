/**
 * The agent's /healthz and /readyz (ESNAP_AGENT_HEALTH_LISTEN): a real agent on PostgreSQL,
 * in-process and as a real `esnap agent` process. The agent reaches PostgreSQL through a TCP relay
 * of this test, so the database can be taken away from the agent alone (the relay stops listening
 * and cuts its connections): /readyz then names the database, and is ready again once the relay
 * is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { AgentRuntime } from '../../src/agent/agent-runtime.js';
import { PG_URL, httpClient } from '../helpers/server.js';
import { waitOutput } from '../helpers/esnap-process.js';
import {
  newClusterDb,
  silentLogger,
  spawnAgent,
  startClusterServer,
  waitFor,
  waitNodeOnline,
  type ClusterDb,
  type ClusterServer,
} from './cluster.helpers.js';

/** A TCP relay to PostgreSQL that can be cut (stop listening, drop connections) and restored on the same port. */
class Relay {
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();
  /** 0 until the first `up()`, which takes a free port; later ups reopen that same port (a restart of the relay). */
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {}
  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
  }
  async down(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }
}

/** A request without credentials. */
const get = (base: string, path: string, method = 'GET') => httpClient(base).req(method, path, { key: null });

/** Whether a new TCP connection to the port is refused (fetch could reuse a kept-alive socket). */
async function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('agent health configuration', () => {
  it('parses ESNAP_AGENT_HEALTH_LISTEN like ESNAP_LISTEN, and none by default', () => {
    expect(loadConfig({ ESNAP_DATA_DIR: '/tmp/x' }).agentHealthListen).toBeNull();
    expect(loadConfig({ ESNAP_DATA_DIR: '/tmp/x', ESNAP_AGENT_HEALTH_LISTEN: '0.0.0.0:9100' }).agentHealthListen).toEqual({ host: '0.0.0.0', port: 9100 });
    expect(loadConfig({ ESNAP_DATA_DIR: '/tmp/x', ESNAP_AGENT_HEALTH_LISTEN: '[::1]:9100' }).agentHealthListen).toEqual({ host: '::1', port: 9100 });
    expect(() => loadConfig({ ESNAP_DATA_DIR: '/tmp/x', ESNAP_AGENT_HEALTH_LISTEN: '9100' })).toThrow(/ESNAP_AGENT_HEALTH_LISTEN must be host:port/);
  });
});

describe('agent /healthz and /readyz', () => {
  let db: ClusterDb;
  let server: ClusterServer;
  let dir: string;
  let relay: Relay;
  let agentDb: ClusterDb;

  beforeAll(async () => {
    db = await newClusterDb();
    dir = await mkdtemp(join(tmpdir(), 'esnap-agent-health-'));
    server = await startClusterServer(db, { nodeSilenceS: 30 });
    const pgu = new URL(PG_URL);
    relay = new Relay({ host: pgu.hostname, port: Number(pgu.port || 5432) });
    await relay.up();
    const viaRelay = new URL(PG_URL);
    viaRelay.port = String(relay.port);
    // The same schema, reached through the relay: only the agent uses it.
    agentDb = {
      ...db,
      agentUrl() {
        const u = new URL(viaRelay.toString());
        u.searchParams.set('options', `-c search_path=${db.schema}`);
        return u.toString();
      },
    };
  }, 60_000);
  afterAll(async () => {
    await server?.close().catch(() => undefined);
    await relay?.down();
    await db?.drop().catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers without credentials, names the database while it is unreachable, and stops with the agent', async () => {
    const root = join(dir, 'n1');
    const rt = await AgentRuntime.start({
      databaseUrl: agentDb.agentUrl(),
      bossSchema: db.bossSchema,
      node: 'health1',
      storages: [{ name: 'default', driver: 'file', root }],
      heartbeatS: 1,
      log: silentLogger,
      healthListen: { host: '127.0.0.1', port: 0 },
    });
    let stopped = false;
    try {
      expect(rt.health).not.toBeNull();
      const base = `http://127.0.0.1:${rt.health!.address.port}`;
      await waitNodeOnline(server, 'health1');

      for (const path of ['/healthz', '/healthz/']) expect((await get(base, path)).body).toEqual({ status: 'ok' });
      const ready = await get(base, '/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body).toEqual({
        status: 'ready',
        checks: { database: { ok: true }, storages: { ok: true }, registration: { ok: true } },
      });
      expect((await get(base, '/readyz/?x=1')).status).toBe(200);
      const head = await get(base, '/readyz', 'HEAD');
      expect(head.status).toBe(200);
      expect(head.text).toBe('');
      expect((await get(base, '/metrics')).status).toBe(404);
      expect((await get(base, '/readyz', 'POST')).status).toBe(405);

      // The database goes away for the agent.
      await relay.down();
      const down = await waitFor('readyz to fail', async () => {
        const r = await get(base, '/readyz');
        return r.status === 503 ? r : null;
      });
      expect(down.body.status).toBe('not ready');
      expect(down.body.failing).toEqual(['database']);
      expect(down.body.checks.database.ok).toBe(false);
      expect(down.body.checks.database.error.length).toBeGreaterThan(0);
      expect(down.body.checks.registration).toEqual({ ok: true });
      expect((await get(base, '/readyz', 'HEAD')).status).toBe(503);
      expect((await get(base, '/healthz')).status).toBe(200);

      // And comes back: the pool reconnects, the agent is ready again.
      await relay.up();
      await waitFor('readyz to recover', async () => (await get(base, '/readyz')).status === 200);

      await rt.stop();
      stopped = true;
      expect(await refused(rt.health!.address.port)).toBe(true);
    } finally {
      if (!stopped) await rt.stop();
    }
  }, 60_000);

  it('esnap agent serves them on ESNAP_AGENT_HEALTH_LISTEN and closes them on SIGTERM', async () => {
    // Port 0: the agent says which port it took in its `agent health checks listening` line.
    const agent = await spawnAgent(db, { node: 'health2', root: join(dir, 'n2') }, { env: { ESNAP_AGENT_HEALTH_LISTEN: '127.0.0.1:0' } });
    try {
      await waitOutput(agent, 'agent health checks listening');
      const line = agent.output().split('\n').find((l) => l.includes('agent health checks listening'))!;
      const port = (JSON.parse(line) as { address: { port: number } }).address.port;
      expect(port).toBeGreaterThan(0);
      const base = `http://127.0.0.1:${port}`;
      const ready = await waitFor('agent readyz 200', async () => {
        try {
          const r = await get(base, '/readyz');
          return r.status === 200 ? r : null;
        } catch {
          return null;
        }
      });
      expect(ready.body.checks).toEqual({ database: { ok: true }, storages: { ok: true }, registration: { ok: true } });
      expect((await get(base, '/healthz')).body).toEqual({ status: 'ok' });
      await waitNodeOnline(server, 'health2');
      agent.proc.kill('SIGTERM');
      expect(await agent.exited).toBe(0);
      expect(await refused(port)).toBe(true);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- esnap agent output ---\n${agent.output()}`, { cause: err });
    } finally {
      await agent.kill('SIGKILL');
    }
  }, 60_000);

  it('esnap agent refuses a malformed ESNAP_AGENT_HEALTH_LISTEN', async () => {
    const agent = await spawnAgent(db, { node: 'health3', root: join(dir, 'n3') }, { env: { ESNAP_AGENT_HEALTH_LISTEN: 'nonsense' } });
    expect(await agent.exited).toBe(1);
    expect(agent.output()).toContain('ESNAP_AGENT_HEALTH_LISTEN must be host:port');
  });
});
