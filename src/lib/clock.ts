/**
 * Waiting, on the AppContext clock. The scheduler's loop, its lock-wait backoff and the prune's
 * backoff all wait through `sleeperOf(ctx.clock)`: with the system clock that is a timer; a clock
 * that can also sleep (a test's manual clock) is used as is, so tests move time instead of
 * waiting for it.
 */
import type { Clock } from '../app-context.js';

export interface Sleeper {
  /** Resolves after `ms` on the clock, or at once when `signal` aborts (never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** A clock that also sleeps on its own time. */
export interface SleepingClock extends Clock, Sleeper {}

export function isSleepingClock(clock: Clock): clock is SleepingClock {
  return typeof (clock as Partial<SleepingClock>).sleep === 'function';
}

export const timerSleeper: Sleeper = {
  sleep(ms, signal) {
    return new Promise((resolve) => {
      if (signal?.aborted) {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      // A wait never keeps the process alive by itself: the server's socket does that.
      timer.unref();
      signal?.addEventListener('abort', done, { once: true });
    });
  },
};

export function sleeperOf(clock: Clock): Sleeper {
  return isSleepingClock(clock) ? clock : timerSleeper;
}
