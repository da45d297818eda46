/**
 * Waiting between attempts, in one place: the delay sequence (first delay, growth, cap, jitter)
 * and a retry loop with an abort signal. Every loop that tries something again (the scheduler's
 * lock waits, the pg-boss queue's sends and steps, the LISTEN reconnect, the alert webhook) takes
 * its delays from here and says only what differs: its numbers, what is worth another attempt,
 * and how it sleeps (a test's clock sleeps on its own time).
 *
 * @example
 *   const b = new Backoff({ firstMs: 100, maxMs: 2000 });
 *   b.next(); b.next(); b.next(); // 100, 200, 400
 *   b.reset();                    // after a success: 100 again
 *
 *   await retry(() => pool.query('…'), { backoff: { firstMs: 100, maxMs: 2000 }, retryIf: () => !closed });
 */

export interface BackoffPolicy {
  /** The first delay. */
  readonly firstMs: number;
  /** No delay is longer (before jitter); default: no cap. */
  readonly maxMs?: number;
  /** `exponential` (default) doubles each delay; `linear` adds `firstMs` each time. */
  readonly growth?: 'exponential' | 'linear';
  /**
   * Share of each delay drawn at random, 0 (default) to 1: a delay d becomes a value in
   * [d × (1 − jitter), d], so processes that failed together do not all come back together.
   */
  readonly jitter?: number;
}

/** The delays of a policy, one `next()` per wait; `reset()` starts over (after a success). */
export class Backoff {
  #n = 0;

  constructor(
    private readonly policy: BackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {
    if (!(policy.firstMs >= 0)) throw new RangeError(`backoff firstMs must be >= 0, got ${policy.firstMs}`);
    const j = policy.jitter ?? 0;
    if (!(j >= 0 && j <= 1)) throw new RangeError(`backoff jitter must be within 0..1, got ${j}`);
  }

  /** The next delay in ms. */
  next(): number {
    const { firstMs, maxMs = Infinity, growth = 'exponential', jitter = 0 } = this.policy;
    const n = this.#n++;
    const raw = growth === 'linear' ? firstMs * (n + 1) : firstMs * 2 ** n;
    const capped = Math.min(raw, maxMs);
    return jitter === 0 ? capped : capped * (1 - jitter * this.random());
  }

  reset(): void {
    this.#n = 0;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export type SleepFn = (ms: number, signal?: AbortSignal) => Promise<void>;

/** A plain timer sleep. */
export const timerSleep: SleepFn = (ms, signal) =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });

export interface RetryOptions {
  readonly backoff: BackoffPolicy;
  /** Attempts in all, the first included (default: no limit). */
  readonly attempts?: number;
  /** Whether an error is worth another attempt (default: every error); `attempt` counts from 1. */
  readonly retryIf?: (err: unknown, attempt: number) => boolean;
  /** Called before each wait (to log the failure). */
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Ends the waiting: the last error is thrown instead of another attempt. */
  readonly signal?: AbortSignal;
  readonly sleep?: SleepFn;
  readonly random?: () => number;
}

/**
 * Calls `attempt` until it resolves; between failures waits the policy's delays. Throws the last
 * error when it is not worth retrying, when the attempts are used up, or when `signal` aborts.
 */
export async function retry<T>(attempt: (n: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const delays = new Backoff(o.backoff, o.random);
  const sleep = o.sleep ?? timerSleep;
  const attempts = o.attempts ?? Infinity;
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (n >= attempts || o.signal?.aborted || (o.retryIf && !o.retryIf(err, n))) throw err;
      const delay = delays.next();
      o.onRetry?.(err, n, delay);
      await sleep(delay, o.signal);
      if (o.signal?.aborted) throw err;
    }
  }
}
