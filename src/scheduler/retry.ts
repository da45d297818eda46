/**
 * Waiting instead of failing: a scheduled run or a retention prune that finds its disk lock held
 * (a manual snapshot or a rollback in progress) tries again with exponential backoff until
 * `ESNAP_SCHEDULE_RETRY_S` has passed since its first attempt, then fails as it would have at once.
 * API calls never come here: they keep Danube's immediate 400 `Task did not acquire lock`.
 *
 * The waits run in the background (a tick or a task completion never blocks on them) in a pool
 * that the scheduler's `stop()` aborts and awaits.
 */
import type { Clock } from '../app-context.js';
import { FailureError, LOCK_FAILED } from '../domain/errors.js';
import type { Sleeper } from '../lib/clock.js';
import { Backoff } from '../domain/backoff.js';

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;

export function isLockBusy(err: unknown): boolean {
  return err instanceof FailureError && err.result === LOCK_FAILED;
}

/** Thrown out of a wait cut short by shutdown. */
export class WaitAborted extends Error {
  override readonly name = 'WaitAborted';
  constructor() {
    super('wait for the disk lock abandoned at shutdown');
  }
}

export interface LockRetryOptions {
  readonly clock: Clock;
  readonly sleeper: Sleeper;
  /** Epoch ms after which a busy lock is final. */
  readonly deadline: number;
  readonly signal: AbortSignal;
}

/**
 * Sleeps, then calls `attempt` until it does not fail on the lock: backoff 1 s, 2 s, 4 s … 30 s,
 * the last wait cut to the deadline, one final attempt at the deadline. Other errors, and the lock
 * error at the deadline, are thrown; shutdown throws WaitAborted.
 */
export async function retryWhileLocked<T>(attempt: () => Promise<T>, o: LockRetryOptions): Promise<T> {
  const delays = new Backoff({ firstMs: FIRST_DELAY_MS, maxMs: MAX_DELAY_MS });
  for (;;) {
    const left = o.deadline - o.clock.now().getTime();
    await o.sleeper.sleep(Math.max(0, Math.min(delays.next(), left)), o.signal);
    if (o.signal.aborted) throw new WaitAborted();
    try {
      return await attempt();
    } catch (err) {
      if (!isLockBusy(err) || o.clock.now().getTime() >= o.deadline) throw err;
    }
  }
}

/** Background waits, one per key at most (a definition's run, a definition's prune). */
export class RetryPool {
  readonly #running = new Map<string, Promise<void>>();
  #abort = new AbortController();

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  has(key: string): boolean {
    return this.#running.has(key);
  }

  get size(): number {
    return this.#running.size;
  }

  /** Starts `work` unless a wait with this key is running; false when it was. `work` must not throw. */
  start(key: string, work: (signal: AbortSignal) => Promise<void>): boolean {
    if (this.#running.has(key)) return false;
    const p = work(this.#abort.signal)
      .catch(() => undefined)
      .finally(() => this.#running.delete(key));
    this.#running.set(key, p);
    return true;
  }

  /** Resolves when no wait is running. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running.values()]);
  }

  /** Aborts every wait and waits for them to end; the pool can be used again afterwards. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.idle();
    this.#abort = new AbortController();
  }
}
