/**
 * `esnap agent`: the agent of one node in cluster mode. It talks to the servers only through
 * pg-boss (a role limited to the pg-boss schema is enough) and never reads esnap's tables:
 *
 * 1. Repair: jobs of its node that pg-boss still holds as `active` were taken by an agent of this
 *    node that died (one agent per node). Each is reported as an `interrupted` failure, so a server
 *    runs the failure cleanup and re-syncs the disks against storage, then the job is failed in
 *    pg-boss (node jobs never retry: whether a half-done storage operation may run again is not
 *    the queue's call).
 * 2. Registration: a `register` message with the node's storages and their sizes; the server
 *    records the node and creates its queue.
 * 3. Heartbeats every `heartbeatS` seconds; the servers mark a silent node `unreachable`.
 *    Separately, `usage` messages with the storages' size and free bytes, after tasks that change
 *    them and every minute (src/nodes/storage.usage.ts).
 * 4. Work: the same Agent as embedded mode, on the node's queue, with a reporter that sends
 *    `started` and `finished` to the results queue (retried until the database takes them).
 *
 * Cancel: while its job is not yet taken, the server withdraws the job (state `created` →
 * `cancelled`) and revokes the task; fetching is atomic against that. A taken job's task is
 * cancelled through this agent (NOTIFY, cluster.cancel.ts): it stops the operation, undoes it and
 * reports it revoked, unless the operation is past its point of no return.
 */
import type { Logger } from '../app-context.js';
import { PgListener } from '../db/pg-listener.js';
import { nodeQueueName, PgBossQueue, REGISTER_QUEUE, RESULTS_QUEUE } from '../queue/pgboss.queue.js';
import { createDriver, type StorageConfig } from '../storage/drivers.js';
import type { StorageDriver } from '../storage/driver.js';
import type { CommandRunner } from '../storage/runner.js';
import { agentRunner } from '../storage/agent-runner.js';
import type { TaskOutcome } from '../tasks/task.types.js';
import { storageRoots } from '../backups/backup-node.js';
import { Agent, failure, type AgentReporter } from './agent.js';
import { RunningTasks } from './running-tasks.js';
import { Ticker } from '../lib/ticker.js';
import { startUsageRefresh } from '../nodes/storage.usage.js';
import { INTERRUPTED_MESSAGE, type RegisterMessage, type ResultMessage } from './cluster.messages.js';
import { AgentHealthServer, newAgentHealthState, type AgentHealthState } from './agent-health.js';
import { listenForCancels } from './cluster.cancel.js';
import type { HypervisorConfig } from '../config.js';
import { agentVirsh, driverExtras, startHypervisor, type HypervisorHandle } from '../hypervisor/hypervisor.js';
import { AgentSsh, type AgentSshOptions } from '../transport/agent-ssh.js';
import { SshTransfer } from '../transport/ssh-transfer.js';
import { StorageError } from '../storage/driver.js';
import { CONTROL_KINDS } from '../transport/trust.service.js';
import { SKIPS_KIND, SkipBoard } from '../hypervisor/libvirt.skips.js';

function heartbeat(node: string): RegisterMessage {
  return { type: 'heartbeat', node, at: new Date().toISOString() };
}

export interface AgentRuntimeOptions {
  /** PostgreSQL URL; the role needs only the pg-boss schema. */
  readonly databaseUrl: string;
  /** pg-boss's schema (bossSchemaFor of esnap's schema). */
  readonly bossSchema: string;
  readonly node: string;
  readonly storages: readonly StorageConfig[];
  /** Seconds between heartbeats (a third of ESNAP_NODE_SILENCE_S). */
  readonly heartbeatS: number;
  readonly concurrency?: number;
  readonly pollIntervalMs?: number;
  readonly log: Logger;
  readonly runner?: CommandRunner;
  /** Longest time a guest stays frozen (ESNAP_FREEZE_LIMIT_S, default 60). */
  readonly freezeLimitS?: number;
  /** Serve /healthz and /readyz here (ESNAP_AGENT_HEALTH_LISTEN); port 0 picks a free port. */
  readonly healthListen?: { readonly host: string; readonly port: number } | null;
  /** Folder recording storage commands, so a restart ends those a crash left (storage/agent-runner.ts). */
  readonly childRecordsDir?: string;
  /** Where this node keeps its restic repository passwords (ESNAP_DATA_DIR/backup-keys). */
  readonly backupKeysDir?: string;
  /** ESNAP_HYPERVISOR…: with libvirt, the node's domains are discovered and sent to the servers. */
  readonly hypervisor?: HypervisorConfig;
  /** ESNAP_SSH_DIR and ESNAP_NODE_ADDRESS: the node's SSH side for backups (src/transport/agent-ssh.ts); none without. */
  readonly ssh?: Omit<AgentSshOptions, 'node' | 'storages'>;
  /** ESNAP_BACKUP_NODE: this node's storages may hold backups. */
  readonly backupNode?: boolean;
}

export class AgentRuntime {
  #heartbeat: Ticker | null = null;
  #usage: Ticker | null = null;
  #hypervisor: HypervisorHandle | null = null;
  #stopped = false;
  /** The node's SSH side, when configured (what backup engines use to reach other nodes). */
  ssh: AgentSsh | null = null;

  private constructor(
    readonly agent: Agent,
    private readonly queue: PgBossQueue,
    private readonly listener: PgListener,
    private readonly opts: AgentRuntimeOptions,
    private readonly healthState: AgentHealthState,
    /** The /healthz and /readyz server, when `healthListen` was given. */
    readonly health: AgentHealthServer | null,
    /** Tasks claimed and not yet reported finished (what a stop waits for). */
    private readonly running: RunningTasks,
  ) {}

  /** Tasks this agent is running (task ids). */
  runningTasks(): string[] {
    return this.running.ids();
  }

  static async start(opts: AgentRuntimeOptions): Promise<AgentRuntime> {
    const log = opts.log;
    // First up, last down: /healthz answers while the start waits for the database, and /readyz
    // says what the agent has reached.
    const healthState = newAgentHealthState();
    const health = opts.healthListen ? await AgentHealthServer.start(opts.healthListen, healthState, log) : null;
    const listener = new PgListener(opts.databaseUrl, log);
    let queue: PgBossQueue;
    try {
      await listener.start();
      queue = await PgBossQueue.open({
        connectionString: opts.databaseUrl,
        schema: opts.bossSchema,
        role: 'agent',
        log,
        listener,
        poolSize: 4,
        ...(opts.pollIntervalMs ? { pollIntervalMs: opts.pollIntervalMs } : {}),
      });
    } catch (err) {
      await listener.stop();
      await health?.stop();
      throw err;
    }
    const node = opts.node;
    healthState.ping = () => queue.depth(node);
    const send = (m: ResultMessage): Promise<void> => queue.publishReliably(RESULTS_QUEUE, m);
    const reporter: AgentReporter = {
      // Taking the job was the claim; the server records STARTED when this message arrives.
      async started(taskId) {
        await send({ type: 'started', node, taskId, at: new Date().toISOString() });
        return true;
      },
      async finished(taskId, outcome: TaskOutcome) {
        await send({ type: 'finished', node, taskId, outcome, at: new Date().toISOString() });
      },
      // Not retried, like a heartbeat: the next report carries fresher numbers (storage.usage.ts).
      async storageUsage(usage) {
        await queue.publish(REGISTER_QUEUE, { type: 'usage', node, storages: usage, at: new Date().toISOString() } satisfies RegisterMessage);
      },
    };
    const runner = opts.runner ?? (await agentRunner(opts.childRecordsDir, log));
    const extras = driverExtras(opts.hypervisor, runner);
    const drivers = new Map<string, StorageDriver>(opts.storages.map((s) => [s.name, createDriver(s, runner, extras)]));
    const freeze = opts.freezeLimitS !== undefined ? { freezeLimitMs: opts.freezeLimitS * 1000 } : {};
    const running = new RunningTasks();
    // Set once the SSH side has started (below); backup tasks only run after that.
    let ssh: AgentSsh | null = null;
    const agent = new Agent(node, drivers, queue, running.track(reporter), log, {
      runner,
      ...freeze,
      libvirt: agentVirsh(opts.hypervisor, runner),
      backup: {
        keysDir: opts.backupKeysDir ?? null,
        roots: storageRoots(opts.storages),
        storages: new Map(opts.storages.map((s) => [s.name, s])),
        ssh: () => ssh,
        // Disks on other nodes: over SSH to the address that node registered.
        remote: (other) => {
          const address = ssh?.addressOf(other) ?? null;
          if (!ssh || !address) throw new StorageError('backend', `No SSH address of node ${other} is known on node ${node} (its agent has not registered one)`);
          return new SshTransfer(runner, ssh.dir, other, address);
        },
      },
    });
    const rt = new AgentRuntime(agent, queue, listener, opts, healthState, health, running);
    try {
      for (const d of drivers.values()) await d.init();
      healthState.storagesReady = true;
      await rt.#repair();
      const stats = await agent.storageStats();
      const storages = opts.storages.map((s) => ({ ...s, size: stats.get(s.name)?.size ?? null, free: stats.get(s.name)?.free ?? null }));
      if (opts.ssh) {
        const side = await AgentSsh.start(runner, { ...opts.ssh, node, storages: opts.storages, ...(opts.freezeLimitS !== undefined ? { freezeLimitMs: opts.freezeLimitS * 1000 } : {}) }, log);
        ssh = side;
        rt.ssh = side;
        agent.control = (msg) => side.control(msg);
      }
      if (opts.hypervisor?.kind === 'libvirt') {
        // The servers apply this node's inventories and answer each with its skipped domains.
        const skips = new SkipBoard(node, log);
        healthState.libvirtSkips = () => skips.summary();
        const other = agent.control;
        agent.control = async (msg) => {
          if (msg.kind === SKIPS_KIND) skips.receive(msg.payload);
          else await other?.(msg);
        };
      }
      const register: RegisterMessage = {
        type: 'register',
        node,
        storages,
        at: new Date().toISOString(),
        ...(rt.ssh ? { ssh: rt.ssh.registration } : {}),
        ...(opts.backupNode !== undefined ? { backup: opts.backupNode } : {}),
      };
      await queue.publishReliably(REGISTER_QUEUE, register);
      // A missed heartbeat is not retried: the next one carries the same news.
      const hb = new Ticker('heartbeat', opts.heartbeatS * 1000, () => queue.publish(REGISTER_QUEUE, heartbeat(node)), log);
      hb.start();
      rt.#heartbeat = hb;
      rt.#usage = startUsageRefresh(agent, log);
      listenForCancels(listener, queue, node, (taskId) => agent.cancel(taskId), log);
      // After the registration: the servers apply an inventory only for a node they know.
      rt.#hypervisor = await startHypervisor(opts.hypervisor, {
        node,
        storages: opts.storages,
        drivers,
        runner,
        log,
        publish: (inv) => queue.publishReliably(REGISTER_QUEUE, { type: 'domains', ...inv } satisfies RegisterMessage),
      });
      await agent.start(opts.concurrency ?? 4);
      // Ready once registered and taking work from its node's queue.
      healthState.registered = true;
      log.info({ node, storages: opts.storages.map((s) => s.name) }, 'agent started');
    } catch (err) {
      await rt.stop();
      throw err;
    }
    return rt;
  }

  /** Reports the jobs a dead agent of this node left active as interrupted, then fails them. */
  async #repair(): Promise<void> {
    const active = await this.queue.activeJobs(this.opts.node);
    for (const job of active) {
      // A control message is not a task: nothing to report (the servers send the next one).
      if (CONTROL_KINDS.has(job.data.kind)) continue;
      const outcome = failure(INTERRUPTED_MESSAGE);
      const m: ResultMessage = { type: 'finished', node: this.opts.node, taskId: job.data.taskId, outcome, interrupted: true, at: new Date().toISOString() };
      await this.queue.publishReliably(RESULTS_QUEUE, m);
    }
    await this.queue.failJobs(this.opts.node, active.map((j) => j.id), INTERRUPTED_MESSAGE);
    if (active.length > 0) this.opts.log.warn({ node: this.opts.node, jobs: active.length }, 'failed jobs interrupted by the previous agent');
  }

  /**
   * Stops taking jobs and lets the running ones finish and report, with heartbeats still going (a
   * draining agent is alive: silent, its node would turn unreachable partway through the grace);
   * then stops heartbeats and disconnects. `esnap agent` bounds this by ESNAP_STOP_GRACE_S.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.healthState.stopping = true;
    await this.#hypervisor?.stop();
    await this.queue.stopConsumer(nodeQueueName(this.opts.node));
    await this.#heartbeat?.stop();
    await this.#usage?.stop();
    await this.queue.stop();
    await this.listener.stop();
    await this.health?.stop();
  }
}
