/**
 * The cluster queue: pg-boss 10 on esnap's PostgreSQL, in a schema of its own. One queue per node
 * (`esnap.node.<hostname>`), plus the queues the servers consume (`esnap.results`,
 * `esnap.register`). Servers install pg-boss, create the queues and run its maintenance; agents
 * start it with migration, supervision and scheduling off, so a role that may only use the pg-boss
 * schema is enough for them.
 *
 * Delivery: a message's job id is derived from its task id, so sending a task twice (a restart
 * re-sends pending tasks) inserts it once. Workers are esnap's own fetch loops (pgboss.consumers.ts),
 * not `boss.work()`: pg-boss 10's worker waits a whole polling interval after every job, which caps
 * a node at a few tasks a second; here a worker fetches again as soon as a slot frees, and a
 * `NOTIFY` after each send wakes the consumers of that queue in every process. Polling remains only
 * as the safety net for a missed notification.
 *
 * Failure rules: a handler that throws fails its job (node queues never retry: a task is retried or
 * failed by esnap's own repair, see agent-runtime.ts); completing or failing a job is retried until
 * the database answers, so a PostgreSQL restart loses nothing.
 *
 * Leases (the servers' queues, `esnap.results` and `esnap.register`): a server killed while it
 * holds such a job must not leave it `active` until pg-boss's expiry (minutes; a task would stay
 * STARTED that long). A consumer holds each of these jobs on a short lease (`leaseSeconds`, 30 s):
 * right after the fetch and then every sixth of the lease it extends the job's `expire_in` to
 * "now + lease", for as long as its handler runs, however slow. Every consumer of the queue also
 * hands back (state `retry`, as `requeue` does) the jobs whose lease has lapsed, i.e. whose holder
 * stopped renewing: it died, or could not reach the database for a whole lease. In the second case
 * the job may be handled twice; the handlers of these queues are idempotent (a result applied
 * twice changes nothing, see tasks/result.consumer.ts), which is what makes the lease safe.
 */
import pg from 'pg';
import PgBoss from 'pg-boss';
import type { Logger } from '../app-context.js';
import { channelName, type PgListener } from '../db/pg-listener.js';
import type { QueueHandler, QueueMessage, TaskQueue } from './queue.js';
import { retry } from '../domain/backoff.js';
import { jobIdOf, nodeQueueName, REGISTER_QUEUE, RESULTS_QUEUE } from './pgboss.names.js';
import { BossJobTable } from './pgboss.jobs.js';
import { BossConsumers, type ConsumeOptions, type JobHandler } from './pgboss.consumers.js';

// The names live in pgboss.names.ts (no pg-boss needed to compute them); re-exported for the
// cluster code that uses both.
export { bossSchemaFor, bossSchemaForUrl, jobIdOf, nodeQueueName, REGISTER_QUEUE, RESULTS_QUEUE } from './pgboss.names.js';

/** A send's attempts: 4 in all, 50, 100 and 150 ms apart. */
const SEND_RETRY = { attempts: 4, backoff: { firstMs: 50, growth: 'linear' } } as const;
/** Default lease of a job of a leased queue (see the header). */
export const DEFAULT_LEASE_S = 30;
/** The queues whose jobs are held on a lease: the servers' own, with idempotent handlers. */
const LEASED_QUEUES: ReadonlySet<string> = new Set([RESULTS_QUEUE, REGISTER_QUEUE]);
const QUEUE_CHANNEL = 'esnap_queue';

/** Queue settings: node jobs never retry and never expire while a long task runs. */
const QUEUE_SETTINGS: Readonly<Record<'node' | 'results' | 'register', Omit<PgBoss.Queue, 'name'>>> = {
  node: { retryLimit: 0, expireInSeconds: 23 * 3600 },
  // Results are idempotent on the server (complete() ignores a finished task), so retry freely.
  results: { retryLimit: 10, retryDelay: 1, retryBackoff: true, expireInSeconds: 300 },
  register: { retryLimit: 3, retryDelay: 1, expireInSeconds: 120 },
};

export interface PgBossQueueOptions {
  readonly connectionString: string;
  /** pg-boss's schema (see bossSchemaFor). */
  readonly schema: string;
  /** Servers install pg-boss and create queues; agents only use them. */
  readonly role: 'server' | 'agent';
  readonly log: Logger;
  /** Wake-ups between processes; without it consumers only poll. */
  readonly listener?: PgListener;
  readonly pollIntervalMs?: number;
  readonly poolSize?: number;
  /** The lease of a job of `esnap.results` / `esnap.register` (DEFAULT_LEASE_S; tests shorten it). */
  readonly leaseSeconds?: number;
}

export class PgBossQueue implements TaskQueue {
  readonly #boss: PgBoss;
  readonly #pool: pg.Pool;
  readonly #consumers: BossConsumers;
  readonly #created = new Set<string>();
  /** Queue creations of this process, one after the other (createQueue). */
  #creating: Promise<void> = Promise.resolve();
  readonly #jobs: BossJobTable;
  readonly #channel: string;
  #closed = false;

  private constructor(private readonly opts: PgBossQueueOptions) {
    this.#pool = new pg.Pool({ connectionString: opts.connectionString, max: opts.poolSize ?? 10 });
    // An idle client that loses its connection must not crash the process; the pool replaces it.
    this.#pool.on('error', (err) => opts.log.warn({ err: err.message }, 'pg-boss pool connection lost'));
    // The same for a client in use (see db/dialect.ts): its running query fails, nothing is thrown.
    this.#pool.on('connect', (client) => client.on('error', () => undefined));
    this.#jobs = new BossJobTable(this.#pool, opts.schema);
    const pool = this.#pool;
    const db: PgBoss.Db = {
      async executeSql(text: string, values?: unknown[]) {
        // pg-boss sends its locked commands as one multi-statement string: a failure inside must not
        // hand a connection in an aborted transaction back to the pool.
        if (values === undefined && /^\s*BEGIN/.test(text)) {
          const client = await pool.connect();
          try {
            return await client.query(text);
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw err;
          } finally {
            client.release();
          }
        }
        return pool.query(text, values);
      },
    };
    const server = opts.role === 'server';
    this.#boss = new PgBoss({ db, schema: opts.schema, migrate: server, supervise: server, schedule: false });
    this.#boss.on('error', (err: unknown) => opts.log.warn({ err: err instanceof Error ? err.message : err }, 'pg-boss error'));
    this.#channel = channelName(QUEUE_CHANNEL, opts.schema);
    this.#consumers = new BossConsumers({
      boss: this.#boss,
      jobs: this.#jobs,
      log: opts.log,
      pollMs: opts.pollIntervalMs ?? 2000,
      leaseS: Math.max(2, opts.leaseSeconds ?? DEFAULT_LEASE_S),
      closed: () => this.#closed,
    });
  }

  /** Starts pg-boss; a server also installs or migrates its schema and creates the shared queues. */
  static async open(opts: PgBossQueueOptions): Promise<PgBossQueue> {
    const q = new PgBossQueue(opts);
    try {
      await q.#boss.start();
      if (opts.role === 'server') {
        await q.createQueue(RESULTS_QUEUE, 'results');
        await q.createQueue(REGISTER_QUEUE, 'register');
      }
    } catch (err) {
      await q.#pool.end().catch(() => undefined);
      throw err;
    }
    opts.listener?.listen(q.#channel, (name) => q.#consumers.kick(name));
    opts.listener?.onReconnect(() => {
      for (const name of q.#consumers.names()) q.#consumers.kick(name);
    });
    return q;
  }

  get schema(): string {
    return this.opts.schema;
  }

  /**
   * Creates a queue once (idempotent in pg-boss too). Servers only: it creates a table. The
   * servers of a schema create queues one at a time (BossJobTable.createLocked), and so do the
   * creations of this process, so that waiting ones never hold the pool's connections that the
   * one holding the lock needs.
   */
  async createQueue(name: string, kind: keyof typeof QUEUE_SETTINGS): Promise<void> {
    if (this.#created.has(name)) return;
    const turn = this.#creating.then(async () => {
      if (this.#created.has(name)) return;
      try {
        await this.#jobs.createLocked(() => this.#boss.createQueue(name, { name, ...QUEUE_SETTINGS[kind] }));
      } catch (err) {
        // A connection lost meanwhile: the queue may exist anyway.
        if (!(await this.#boss.getQueue(name))) throw err;
      }
      this.#created.add(name);
    });
    this.#creating = turn.catch(() => undefined);
    await turn;
  }

  async send(node: string, msg: QueueMessage): Promise<void> {
    const name = nodeQueueName(node);
    // A node's queue is made when its agent registers; sending to a queue that does not exist
    // would drop the job silently, so make sure here too.
    if (this.opts.role === 'server') await this.createQueue(name, 'node');
    // A job id is fixed per task, so a retry can never queue it twice; retrying covers the
    // deadlocks pg-boss's queue DDL can cause with inserts running at the same moment.
    const id = jobIdOf(msg.taskId);
    await retry(() => this.publish(name, msg, id), {
      ...SEND_RETRY,
      onRetry: (err, attempt) => this.opts.log.warn({ err: (err as Error).message, taskId: msg.taskId, attempt }, 'queue send failed; retrying'),
    });
  }

  /**
   * `send` for many messages: pg-boss's bulk `insert` (one statement per 1,000 jobs, job ids from
   * the task ids as in `send`, so a repeat inserts nothing), then one wake-up for the queue.
   */
  async sendMany(node: string, msgs: readonly QueueMessage[]): Promise<void> {
    if (msgs.length === 0) return;
    const name = nodeQueueName(node);
    if (this.opts.role === 'server') await this.createQueue(name, 'node');
    for (let i = 0; i < msgs.length; i += 1000) {
      const jobs = msgs.slice(i, i + 1000).map((m) => ({ id: jobIdOf(m.taskId), name, data: m }));
      await retry(() => this.#boss.insert(jobs), {
        ...SEND_RETRY,
        onRetry: (err, attempt) => this.opts.log.warn({ err: (err as Error).message, jobs: jobs.length, attempt }, 'queue bulk send failed; retrying'),
      });
    }
    await this.#wake(name);
  }

  /** Sends any message to a queue, then wakes its consumers here and in other processes. */
  async publish(name: string, data: object, id?: string): Promise<void> {
    await this.#boss.send(name, data, id ? { id } : {});
    await this.#wake(name);
  }

  /** Wakes the queue's consumers here and, by NOTIFY, in other processes. */
  async #wake(name: string): Promise<void> {
    this.#consumers.kick(name);
    if (this.opts.listener) {
      await this.#pool.query('SELECT pg_notify($1, $2)', [this.#channel, name]).catch((err: unknown) => {
        // Consumers elsewhere still find the job at their next poll.
        this.opts.log.warn({ err: (err as Error).message }, 'queue NOTIFY failed');
      });
    }
  }

  /** A NOTIFY on esnap's pool (cancel requests and answers between servers and agents). */
  async notify(channel: string, payload: string): Promise<void> {
    await this.#pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  /** `publish` that retries until the database takes the message or the queue closes. */
  async publishReliably(name: string, data: object, id?: string): Promise<void> {
    await this.#consumers.persist(() => this.publish(name, data, id), `send to ${name}`);
  }

  async work(node: string, handler: QueueHandler, opts: { concurrency?: number } = {}): Promise<void> {
    await this.consume(nodeQueueName(node), (data) => handler(data as QueueMessage), opts);
  }

  /** Works any queue with up to `concurrency` jobs at a time (pgboss.consumers.ts). */
  async consume(name: string, handler: JobHandler, opts: ConsumeOptions = {}): Promise<void> {
    if (this.#closed) throw new Error('queue is stopped');
    await this.#consumers.start(name, handler, opts, LEASED_QUEUES.has(name));
  }

  /** Stops one consumer in this process (the queue stays open), waiting for its jobs in flight. */
  async stopConsumer(name: string): Promise<void> {
    await this.#consumers.stopOne(name);
  }

  async withdraw(node: string, taskId: string): Promise<boolean> {
    return this.#jobs.withdraw(nodeQueueName(node), jobIdOf(taskId));
  }

  /** The tasks among `taskIds` that have a job on the node's queue, live or archived. */
  async knownTasks(node: string, taskIds: readonly string[]): Promise<Set<string>> {
    const byJob = new Map(taskIds.map((t) => [jobIdOf(t), t]));
    const known = await this.#jobs.known(nodeQueueName(node), [...byJob.keys()]);
    return new Set([...known].map((id) => byJob.get(id)!));
  }

  /** pg-boss's state of each task's job on a node (`created`, `active`, …); absent when there is none. */
  async jobStates(node: string, taskIds: readonly string[]): Promise<Map<string, string>> {
    const byJob = new Map(taskIds.map((t) => [jobIdOf(t), t]));
    const states = await this.#jobs.states(nodeQueueName(node), [...byJob.keys()]);
    return new Map([...states].map(([id, state]) => [byJob.get(id)!, state]));
  }

  async depth(node: string): Promise<number> {
    return this.#jobs.depth(nodeQueueName(node));
  }

  /** Jobs of a node that a worker holds as active (after a crash: the dead agent's work). */
  async activeJobs(node: string): Promise<Array<{ id: string; data: QueueMessage }>> {
    return this.#jobs.active<QueueMessage>(nodeQueueName(node));
  }

  /** Ends jobs as failed (never retried: node queues have no retries). */
  async failJobs(node: string, ids: readonly string[], message: string): Promise<void> {
    if (ids.length === 0) return;
    for (const id of ids) await this.#consumers.persist(() => this.#boss.fail(nodeQueueName(node), id, { message }), 'fail job');
  }

  /** Hands active jobs back to the queue so they are delivered again. */
  async requeue(node: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#jobs.requeue(nodeQueueName(node), ids);
    this.#consumers.kick(nodeQueueName(node));
  }

  /** Stops taking jobs, waits for the ones in flight (their completion is recorded), then closes. */
  async stop(): Promise<void> {
    if (this.#closed) return;
    await this.#consumers.stopAll();
    this.#closed = true;
    await this.#boss.stop({ graceful: false, close: false }).catch((err: unknown) => this.opts.log.warn({ err }, 'pg-boss stop failed'));
    await this.#pool.end().catch(() => undefined);
  }
}
