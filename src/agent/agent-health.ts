/**
 * `/healthz` and `/readyz` of `esnap agent` on ESNAP_AGENT_HEALTH_LISTEN: a plain node:http server
 * (the agent has no Fastify), no authentication, GET and HEAD, with or without a trailing slash
 * like the API server's. The answers have the API server's shape (src/health/health.checks.ts).
 *
 * Readiness of an agent, in check order:
 * - `database`: its pg-boss connection answers a query (the queue depth of its node);
 * - `storages`: every storage driver is initialised;
 * - `registration`: its `register` message, with storages and sizes, is in the queue the servers
 *   consume and it works its node's queue; not so before that, nor from the moment it begins to stop;
 * - `libvirt` (ESNAP_HYPERVISOR=libvirt, once a server has answered an inventory): the node's
 *   skipped domains counted by reason, never named (src/hypervisor/libvirt.skips.ts); it stays ok.
 *
 * The server starts before the agent connects (so /healthz answers while a start-up waits for the
 * database) and stops after the agent has stopped: start and stop are symmetric around it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../app-context.js';
import { HEALTHY_BODY, runChecks, type HealthCheck, type Readiness } from '../health/health.checks.js';
import type { SkipSummary } from '../hypervisor/libvirt.skips.js';

/** What the agent runtime has reached; it updates this object as it starts and stops. */
export interface AgentHealthState {
  /** A trivial query on the agent's database connection; null until the queue is open. */
  ping: (() => Promise<unknown>) | null;
  storagesReady: boolean;
  /** Registered, and taking work from its node's queue. */
  registered: boolean;
  stopping: boolean;
  /** The node's skipped libvirt domains as the servers last reported them; null: no report (yet). */
  libvirtSkips: (() => SkipSummary | null) | null;
}

export function newAgentHealthState(): AgentHealthState {
  return { ping: null, storagesReady: false, registered: false, stopping: false, libvirtSkips: null };
}

export function agentReadiness(state: AgentHealthState): Promise<Readiness> {
  const checks: HealthCheck[] = [
    {
      name: 'database',
      probe: async () => {
        if (!state.ping) throw new Error('not connected yet');
        await state.ping();
      },
    },
    {
      name: 'storages',
      probe: async () => {
        if (!state.storagesReady) throw new Error('storages are not initialised yet');
      },
    },
    {
      name: 'registration',
      probe: async () => {
        if (state.stopping) throw new Error('the agent is stopping');
        if (!state.registered) throw new Error('the agent has not registered and started working yet');
      },
    },
  ];
  const skipped = state.libvirtSkips?.() ?? null;
  if (skipped !== null) checks.push({ name: 'libvirt', probe: async () => skipped });
  return runChecks(checks);
}

const PATHS: Readonly<Record<string, 'healthz' | 'readyz'>> = {
  '/healthz': 'healthz',
  '/healthz/': 'healthz',
  '/readyz': 'readyz',
  '/readyz/': 'readyz',
};

export class AgentHealthServer {
  private constructor(
    private readonly server: Server,
    readonly address: { readonly host: string; readonly port: number },
  ) {}

  /**
   * Listens on `listen` (port 0 picks a free one; see `address`).
   *
   * @example
   *   const state = newAgentHealthState();
   *   const health = await AgentHealthServer.start({ host: '127.0.0.1', port: 9100 }, state, log);
   *   … state.registered = true …
   *   await health.stop();
   */
  static async start(listen: { host: string; port: number }, state: AgentHealthState, log: Logger): Promise<AgentHealthServer> {
    const server = createServer((req, res) => {
      handle(req, res, state).catch((err: unknown) => {
        log.error({ err }, 'health request failed');
        if (!res.headersSent) send(res, req, 500, JSON.stringify({ detail: 'Internal server error' }));
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log.error({ err }, 'health server error'));
    const a = server.address() as AddressInfo;
    return new AgentHealthServer(server, { host: a.address, port: a.port });
  }

  async stop(): Promise<void> {
    // Monitors keep connections alive; they must not hold the agent's exit.
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, state: AgentHealthState): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]!;
  const which = PATHS[path];
  if (!which) {
    send(res, req, 404, JSON.stringify({ detail: 'Not found' }));
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    send(res, req, 405, JSON.stringify({ detail: `Method "${req.method ?? ''}" not allowed.` }));
    return;
  }
  if (which === 'healthz') {
    send(res, req, 200, HEALTHY_BODY);
    return;
  }
  const r = await agentReadiness(state);
  send(res, req, r.status, JSON.stringify(r.body));
}

function send(res: ServerResponse, req: IncomingMessage, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
