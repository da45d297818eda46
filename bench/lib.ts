/** Small helpers for the benchmarks: a keep-alive HTTP load loop (in this process or a child) and percentiles. */
import http from 'node:http';
import { execFile, spawn } from 'node:child_process';

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  /** Answers other than 200 (not in the latencies). */
  errors: number;
}

/**
 * Sends GETs with `concurrency` keep-alive connections for `seconds`, or until `stop` aborts when
 * seconds is 0; every answer must be 200.
 */
export async function load(url: string, headers: Record<string, string>, seconds: number, concurrency: number, stop?: AbortSignal): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  // A window that runs until stopped counts failed answers instead of ending at the first.
  const countErrors = seconds <= 0;
  let errors = 0;
  const end = seconds > 0 ? performance.now() + seconds * 1000 : Infinity;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const req = http.get(url, { agent, headers }, (res) => {
        res.on('data', () => undefined);
        res.on('end', () => {
          if (res.statusCode !== 200) {
            if (!countErrors) reject(new Error(`status ${res.statusCode}`));
            errors++;
          } else latencies.push(performance.now() - t0);
          resolve();
        });
      });
      req.on('error', reject);
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end && !stop?.aborted) await one();
    }),
  );
  const secs = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { requests: latencies.length, seconds: secs, rps: latencies.length / secs, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
}

/** `load` run by bench/load-child.js in a process of its own (its CPU is not the measured server's). */
export function loadInChild(url: string, headers: Record<string, string>, seconds: number, concurrency: number): Promise<LoadResult> {
  const child = new URL('./load-child.js', import.meta.url).pathname;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [child, url, String(seconds), String(concurrency), JSON.stringify(headers)], (err, stdout, stderr) => {
      if (err) reject(new Error(`load generator failed: ${stderr || err.message}`));
      else resolve(JSON.parse(stdout) as LoadResult);
    });
  });
}

/**
 * `load` in a process of its own that runs until `stop()` (SIGTERM), for a window whose length is
 * not known in advance (the scheduler bench measures the list while a slot is handled).
 */
export function startLoadInChild(url: string, headers: Record<string, string>, concurrency: number): { stop(): Promise<LoadResult> } {
  const child = spawn(process.execPath, [new URL('./load-child.js', import.meta.url).pathname, url, '0', String(concurrency), JSON.stringify(headers)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<LoadResult>((resolve, reject) =>
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`load generator failed (${code}): ${err}`)))),
  );
  // A load process that died early is reported by stop(), not as an unhandled rejection.
  done.catch(() => undefined);
  return {
    stop: () => {
      child.kill('SIGTERM');
      return done;
    },
  };
}

/** Sums rounds of `load`: requests over seconds, and the median of the rounds' percentiles. */
export function combine(rounds: readonly LoadResult[]): LoadResult {
  const requests = rounds.reduce((n, r) => n + r.requests, 0);
  const seconds = rounds.reduce((n, r) => n + r.seconds, 0);
  const mid = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
  return { requests, seconds, rps: requests / seconds, p50: mid(rounds.map((r) => r.p50)), p99: mid(rounds.map((r) => r.p99)), errors: rounds.reduce((n, r) => n + r.errors, 0) };
}

export function fmt(n: number, digits = 1): string {
  return n.toFixed(digits);
}
