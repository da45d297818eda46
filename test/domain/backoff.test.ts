import { describe, expect, it } from 'vitest';
import { Backoff, retry, timerSleep, type SleepFn } from '../../src/domain/backoff.js';

const take = (b: Backoff, n: number) => Array.from({ length: n }, () => b.next());

describe('Backoff', () => {
  it('doubles from the first delay up to the cap, and starts over after reset', () => {
    const b = new Backoff({ firstMs: 100, maxMs: 2000 });
    expect(take(b, 7)).toEqual([100, 200, 400, 800, 1600, 2000, 2000]);
    b.reset();
    expect(take(b, 2)).toEqual([100, 200]);
  });

  it('grows without a cap when none is given, and linearly when asked', () => {
    expect(take(new Backoff({ firstMs: 1000 }), 5)).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect(take(new Backoff({ firstMs: 50, growth: 'linear' }), 4)).toEqual([50, 100, 150, 200]);
    expect(take(new Backoff({ firstMs: 50, growth: 'linear', maxMs: 120 }), 4)).toEqual([50, 100, 120, 120]);
  });

  it('takes up to the jitter share off each delay, never adds', () => {
    const draws = [0, 1, 0.5];
    const b = new Backoff({ firstMs: 1000, jitter: 0.2 }, () => draws.shift()!);
    expect(take(b, 3)).toEqual([1000, 1600, 3600]);
    const r = new Backoff({ firstMs: 100, maxMs: 400, jitter: 1 });
    for (const d of take(r, 20)) {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(400);
    }
  });

  it('refuses a negative first delay and a jitter outside 0..1', () => {
    expect(() => new Backoff({ firstMs: -1 })).toThrow(RangeError);
    expect(() => new Backoff({ firstMs: 1, jitter: 1.5 })).toThrow(RangeError);
  });
});

describe('retry', () => {
  /** A sleep that records its delays and returns at once. */
  function recorder(): { sleep: SleepFn; waits: number[] } {
    const waits: number[] = [];
    return { waits, sleep: async (ms) => void waits.push(ms) };
  }
  const failing = (times: number) => {
    let calls = 0;
    return async (n: number) => {
      calls++;
      expect(n).toBe(calls);
      if (calls <= times) throw new Error(`fail ${calls}`);
      return `ok after ${calls}`;
    };
  };

  it('tries again with the policy delays until the attempt succeeds', async () => {
    const r = recorder();
    const seen: Array<[string, number, number]> = [];
    const out = await retry(failing(3), {
      backoff: { firstMs: 100, maxMs: 250 },
      sleep: r.sleep,
      onRetry: (err, attempt, delay) => seen.push([(err as Error).message, attempt, delay]),
    });
    expect(out).toBe('ok after 4');
    expect(r.waits).toEqual([100, 200, 250]);
    expect(seen).toEqual([['fail 1', 1, 100], ['fail 2', 2, 200], ['fail 3', 3, 250]]);
  });

  it('throws the last error when the attempts are used up, without a wait after the last', async () => {
    const r = recorder();
    await expect(retry(failing(10), { attempts: 4, backoff: { firstMs: 50, growth: 'linear' }, sleep: r.sleep })).rejects.toThrow('fail 4');
    expect(r.waits).toEqual([50, 100, 150]);
  });

  it('throws at once an error not worth retrying', async () => {
    const r = recorder();
    const attempt = failing(10);
    await expect(retry(attempt, { backoff: { firstMs: 1 }, sleep: r.sleep, retryIf: (err) => (err as Error).message !== 'fail 2' })).rejects.toThrow('fail 2');
    expect(r.waits).toEqual([1]);
  });

  it('stops waiting when its signal aborts, with the last error', async () => {
    const stop = new AbortController();
    const started = Date.now();
    const p = retry(failing(10), { backoff: { firstMs: 60_000 }, signal: stop.signal });
    setTimeout(() => stop.abort(), 10);
    await expect(p).rejects.toThrow('fail 1');
    // Far less than the 60 s wait: the abort ended it (a bound, not a timing claim).
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('makes no attempt after an abort that came before the failure', async () => {
    const stop = new AbortController();
    stop.abort();
    let calls = 0;
    await expect(
      retry(async () => {
        calls++;
        throw new Error('refused');
      }, { backoff: { firstMs: 1 }, signal: stop.signal }),
    ).rejects.toThrow('refused');
    expect(calls).toBe(1);
  });

  it('timerSleep resolves at once on an aborted signal', async () => {
    const stop = new AbortController();
    stop.abort();
    await timerSleep(60_000, stop.signal);
  });
});
