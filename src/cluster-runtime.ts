/**
 * The cluster pieces of an `esnap serve` process on PostgreSQL: the pg-boss queue (servers install
 * it and create the queues), task wake-ups across servers (LISTEN/NOTIFY), and the services every
 * server runs: registrations and heartbeats, agents' results, and the deadline sweep. Several
 * servers may run these at once: every step is idempotent or atomic in the database.
 */
import type { Kysely } from 'kysely';
import type { AppContext, Logger } from './app-context.js';
import type { Database } from './db/schema.js';
import { channelName, PgListener } from './db/pg-listener.js';
import { bossSchemaFor, nodeQueueName, PgBossQueue } from './queue/pgboss.queue.js';
import { PgTaskEvents, TASK_CHANNEL } from './tasks/pg-task.events.js';
import { consumeRegistrations, localHeartbeat } from './nodes/node.heartbeat.js';
import { consumeResults } from './tasks/result.consumer.js';
import { resyncAfterRepair } from './snapshots/snapshot.sync.js';
import { recheckLateBackupDeletes } from './backups/backup.service.js';
import { ClusterSweep } from './tasks/deadline.sweep.js';
import { ClusterCanceller } from './agent/cluster.cancel.js';

export interface ClusterOptions {
  readonly agentDeadlineS: number;
  readonly nodeSilenceS: number;
  readonly pollIntervalMs?: number;
}

export const DEFAULT_AGENT_DEADLINE_S = 120;
export const DEFAULT_NODE_SILENCE_S = 30;

export class ClusterTransport {
  readonly #services: Array<{ stop(): Promise<void> }> = [];

  private constructor(
    readonly queue: PgBossQueue,
    readonly events: PgTaskEvents,
    private readonly listener: PgListener,
    /** Cancels of running tasks, sent to the agents by NOTIFY (agent/cluster.cancel.ts). */
    readonly canceller: ClusterCanceller,
  ) {}

  /** Connects the LISTEN client and pg-boss (installing its schema, `<esnap schema>_pgboss`). */
  static async open(db: Kysely<Database>, url: string, schema: string | undefined, log: Logger, opts: { pollIntervalMs?: number } = {}): Promise<ClusterTransport> {
    const listener = new PgListener(url, log);
    await listener.start();
    try {
      const queue = await PgBossQueue.open({
        connectionString: url,
        schema: bossSchemaFor(schema),
        role: 'server',
        log,
        listener,
        ...(opts.pollIntervalMs ? { pollIntervalMs: opts.pollIntervalMs } : {}),
      });
      const events = new PgTaskEvents(db, listener, channelName(TASK_CHANNEL, schema), log);
      return new ClusterTransport(queue, events, listener, new ClusterCanceller(listener, queue));
    } catch (err) {
      await listener.stop();
      throw err;
    }
  }

  /**
   * Starts the server-side services. Pending tasks that have no job at all are sent first: a
   * server may have died between committing a task and sending it. A task with a job, even a
   * finished or archived one, is left alone: its result may be waiting in the results queue, and
   * sending it again would run it twice.
   */
  async startServices(ctx: AppContext, opts: ClusterOptions): Promise<void> {
    const pending = await ctx.db.selectFrom('task').select(['id', 'kind', 'payload', 'node']).where('state', '=', 'PENDING').orderBy('created').execute();
    const byNode = new Map<string, typeof pending>();
    for (const t of pending) if (t.node !== null) byNode.set(t.node, [...(byNode.get(t.node) ?? []), t]);
    for (const [node, tasks] of byNode) {
      const known = await this.queue.knownTasks(node, tasks.map((t) => t.id));
      for (const t of tasks) {
        if (known.has(t.id)) continue;
        ctx.log.warn({ taskId: t.id, node }, 'pending task had never reached its queue: sending it');
        await this.queue.send(node, { taskId: t.id, kind: t.kind, payload: JSON.parse(t.payload) as unknown });
      }
    }
    await consumeRegistrations(ctx, this.queue);
    // An uncertain end re-syncs the snapshots' disks and re-checks a late backup delete's backups.
    await consumeResults(ctx, this.queue, async (c, tasks) => {
      await resyncAfterRepair(c, tasks);
      await recheckLateBackupDeletes(c, tasks);
    });
    const sweep = new ClusterSweep(ctx, this.queue, { deadlineS: opts.agentDeadlineS, silenceS: opts.nodeSilenceS });
    sweep.start();
    this.#services.push(sweep);
  }

  /**
   * For an agent inside this server, before it starts working: its node's queue exists, jobs a
   * killed predecessor had taken are handed back (markStarted skips those whose task recover()
   * has just failed, and runs those that never started), and its heartbeat is written straight to
   * the node row.
   */
  async prepareLocalAgent(ctx: AppContext, node: string, silenceS: number): Promise<void> {
    await this.queue.createQueue(nodeQueueName(node), 'node');
    await this.queue.requeue(node, (await this.queue.activeJobs(node)).map((j) => j.id));
    this.#services.push(localHeartbeat(ctx, node, silenceS));
  }

  /** Stops the loops, then the queue (waiting for jobs in flight), then the LISTEN client. */
  async stopServices(): Promise<void> {
    for (const s of this.#services.splice(0)) await s.stop();
  }

  async close(): Promise<void> {
    await this.stopServices();
    await this.queue.stop();
    await this.listener.stop();
  }
}
