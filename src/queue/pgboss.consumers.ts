/**
 * The consumers of pgboss.queue.ts: esnap's own fetch loops on pg-boss queues, one per queue name
 * in this process, each with up to `concurrency` handlers at a time. A loop fetches again as soon
 * as a slot frees and sleeps otherwise until a kick (a send here, a NOTIFY from elsewhere, a freed
 * slot) or the polling interval. Leased queues (the servers' own) hold each job on a short lease
 * that a timer renews while its handler runs, and every consumer of such a queue hands back the
 * jobs whose lease lapsed (see the header of pgboss.queue.ts).
 *
 * Example:
 *   const consumers = new BossConsumers({ boss, jobs, log, pollMs: 2000, leaseS: 30, closed: () => false });
 *   await consumers.start('esnap.results', handler, { concurrency: 4 }, true);
 *   consumers.kick('esnap.results');
 */
import type PgBoss from 'pg-boss';
import type { Logger } from '../app-context.js';
import { retry } from '../domain/backoff.js';
import type { BossJobTable } from './pgboss.jobs.js';

export type JobHandler = (data: unknown) => Promise<void>;

export interface ConsumeOptions {
  readonly concurrency?: number;
  /** Delete a job once handled instead of keeping it as `completed` (heartbeats, results). */
  readonly discard?: boolean;
}

export interface ConsumerDeps {
  readonly boss: PgBoss;
  readonly jobs: BossJobTable;
  readonly log: Logger;
  readonly pollMs: number;
  readonly leaseS: number;
  /** True once the queue is closed: database steps stop retrying. */
  readonly closed: () => boolean;
}

interface Consumer {
  readonly name: string;
  readonly handler: JobHandler;
  readonly concurrency: number;
  readonly discard: boolean;
  readonly running: Set<Promise<void>>;
  /** Leased queues: the ids of the jobs this consumer's handlers hold now. */
  readonly held: Set<string>;
  /** Leased queues: the timer that renews the leases and reclaims lapsed ones. */
  leaseTimer: NodeJS.Timeout | null;
  stopping: boolean;
  loop: Promise<void> | null;
  kicked: boolean;
  wake: (() => void) | null;
}

export class BossConsumers {
  readonly #all = new Map<string, Consumer>();

  constructor(private readonly d: ConsumerDeps) {}

  /** Starts the consumer of queue `name`; `leased`: its jobs are held on a lease. */
  async start(name: string, handler: JobHandler, opts: ConsumeOptions, leased: boolean): Promise<void> {
    if (this.#all.has(name)) throw new Error(`queue ${name} already has a worker here`);
    const c: Consumer = {
      name,
      handler,
      concurrency: Math.max(1, opts.concurrency ?? 4),
      discard: opts.discard ?? false,
      running: new Set(),
      held: new Set(),
      leaseTimer: null,
      stopping: false,
      loop: null,
      kicked: false,
      wake: null,
    };
    this.#all.set(name, c);
    if (leased) {
      // Jobs a dead consumer left behind are taken back at once, then at every renewal.
      await this.#reclaimLapsed(name);
      c.leaseTimer = setInterval(() => void this.#tendLeases(c), Math.max(500, Math.floor((this.d.leaseS * 1000) / 6)));
      c.leaseTimer.unref();
    }
    c.loop = this.#loop(c);
  }

  /** The queues consumed here. */
  names(): IterableIterator<string> {
    return this.#all.keys();
  }

  /** Wakes the consumer of `name`, if it is here. */
  kick(name: string): void {
    const c = this.#all.get(name);
    if (!c) return;
    c.kicked = true;
    c.wake?.();
  }

  /** Stops one consumer, waiting for its jobs in flight. */
  async stopOne(name: string): Promise<void> {
    const c = this.#all.get(name);
    if (!c) return;
    c.stopping = true;
    this.kick(name);
    await c.loop;
    await Promise.all([...c.running]);
    if (c.leaseTimer) clearInterval(c.leaseTimer);
    if (this.#all.get(name) === c) this.#all.delete(name);
  }

  /** Stops every consumer, waiting for their jobs in flight (their ends are recorded). */
  async stopAll(): Promise<void> {
    for (const c of this.#all.values()) {
      c.stopping = true;
      this.kick(c.name);
    }
    for (const c of this.#all.values()) {
      await c.loop;
      await Promise.all([...c.running]);
      if (c.leaseTimer) clearInterval(c.leaseTimer);
    }
  }

  /** Retries a database step with a capped backoff until it succeeds or the queue is closed. */
  async persist(step: () => Promise<unknown>, what: string): Promise<void> {
    await retry(step, {
      backoff: { firstMs: 100, maxMs: 2000 },
      retryIf: () => !this.d.closed(),
      onRetry: (err) => this.d.log.warn({ err: (err as Error).message, what }, 'queue step failed; retrying'),
    });
  }

  /** Renews the leases of the jobs `c` holds, then hands back lapsed ones (anyone's). */
  async #tendLeases(c: Consumer): Promise<void> {
    try {
      await this.d.jobs.renew(c.name, [...c.held], this.d.leaseS);
      await this.#reclaimLapsed(c.name);
    } catch (err) {
      // The database is away: the next tick tries again (a lease outlives several ticks).
      this.d.log.warn({ err: (err as Error).message, queue: c.name }, 'queue lease renewal failed');
    }
  }

  /** Hands back the active jobs of a leased queue whose lease lapsed (their holder is gone). */
  async #reclaimLapsed(name: string): Promise<number> {
    const n = await this.d.jobs.reclaimLapsed(name);
    if (n > 0) {
      this.d.log.warn({ queue: name, jobs: n }, 'reclaimed jobs whose holder stopped renewing its lease');
      this.kick(name);
    }
    return n;
  }

  async #wait(c: Consumer, ms: number): Promise<void> {
    if (c.kicked || c.stopping) {
      c.kicked = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        c.wake = null;
        resolve();
      }, ms);
      c.wake = () => {
        clearTimeout(timer);
        c.wake = null;
        resolve();
      };
    });
    c.kicked = false;
  }

  async #loop(c: Consumer): Promise<void> {
    while (!c.stopping) {
      const free = c.concurrency - c.running.size;
      let got = 0;
      if (free > 0) {
        // Clear the flag before fetching: a send during the fetch kicks again and is not lost.
        c.kicked = false;
        let jobs: PgBoss.Job<unknown>[] = [];
        try {
          jobs = await this.d.boss.fetch<unknown>(c.name, { batchSize: free });
        } catch (err) {
          this.d.log.warn({ err: (err as Error).message, queue: c.name }, 'queue fetch failed');
        }
        got = jobs.length;
        if (c.leaseTimer && jobs.length > 0) {
          // Shorten the queue's expiry to the lease at once; the timer renews it from here.
          for (const job of jobs) c.held.add(job.id);
          await this.d.jobs.renew(c.name, jobs.map((j) => j.id), this.d.leaseS).catch((err: unknown) => {
            this.d.log.warn({ err: (err as Error).message, queue: c.name }, 'queue lease renewal failed');
          });
        }
        for (const job of jobs) this.#run(c, job);
      }
      // Fetch again at once while jobs keep coming and slots are free; otherwise wait for a kick
      // (a send, a freed slot) or the polling interval.
      if (got > 0 && c.running.size < c.concurrency) continue;
      await this.#wait(c, this.d.pollMs);
    }
  }

  #run(c: Consumer, job: PgBoss.Job<unknown>): void {
    const p: Promise<void> = (async () => {
      let error: unknown = null;
      try {
        await c.handler(job.data);
      } catch (err) {
        error = err;
        this.d.log.error({ err, queue: c.name, job: job.id }, 'queue handler failed');
      }
      await this.persist(
        () =>
          error === null
            ? c.discard
              ? this.d.boss.deleteJob(c.name, job.id)
              : this.d.boss.complete(c.name, job.id)
            : this.d.boss.fail(c.name, job.id, { message: error instanceof Error ? error.message : String(error) }),
        'record job end',
      );
    })().finally(() => {
      c.held.delete(job.id);
      c.running.delete(p);
      this.kick(c.name);
    });
    c.running.add(p);
  }
}
