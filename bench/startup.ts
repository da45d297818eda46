/**
 * Start-up: the time from `npm start` to the first 200 on GET /healthz, with nothing changed since
 * the last build (the "second start" a newcomer sees), beside the same server started without
 * the build step (`node dist/src/bin/esnap.js serve`): the difference is what the up-to-date checks
 * of `tsc -b` and `ui/build.mjs` cost. One warm-up start creates the database first (its
 * migrations run once, as on a real first start); then the two sides alternate which goes first.
 *
 *   node dist/bench/startup.js [rounds]     (default 3; run from the repository root)
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

const rounds = Number(process.argv[2] ?? 3);
const port = 20_000 + (process.pid % 20_000);

function healthy(): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

/** Starts `argv` in its own process group, returns ms until /healthz answers 200, then stops the group. */
async function timeStart(argv: readonly string[], dataDir: string): Promise<number> {
  const t0 = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, ESNAP_DATA_DIR: dataDir, ESNAP_LISTEN: `127.0.0.1:${port}`, ESNAP_ADMIN_API_KEY: 'startup-bench-key-0123456789' },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let ms = NaN;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${argv.join(' ')} exited with ${child.exitCode} before answering`);
      if (await healthy()) {
        ms = performance.now() - t0;
        break;
      }
      if (performance.now() - t0 > 120_000) throw new Error(`${argv.join(' ')}: no answer within 120 s`);
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    // The group: npm and the server it started.
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
    await exited;
    // npm may exit before its child; wait until the port is free again.
    while (await healthy()) await new Promise((r) => setTimeout(r, 50));
  }
  return ms;
}

const sides = {
  'npm start': ['npm', 'start', '--silent'],
  'node dist/src/bin/esnap.js serve': [process.execPath, 'dist/src/bin/esnap.js', 'serve'],
} as const;
type Side = keyof typeof sides;

const dataDir = await mkdtemp(join(tmpdir(), 'esnap-startup-'));
try {
  const load = () => loadavg()[0]!.toFixed(2);
  console.log(`warm-up start (creates the database): ${(await timeStart(sides['npm start'], dataDir)).toFixed(0)} ms, load ${load()}`);
  const times: Record<Side, number[]> = { 'npm start': [], 'node dist/src/bin/esnap.js serve': [] };
  for (let i = 0; i < rounds; i++) {
    const order: Side[] = i % 2 === 0 ? ['npm start', 'node dist/src/bin/esnap.js serve'] : ['node dist/src/bin/esnap.js serve', 'npm start'];
    for (const side of order) {
      const ms = await timeStart(sides[side], dataDir);
      times[side].push(ms);
      console.log(`round ${i + 1}: ${side}: ${ms.toFixed(0)} ms to the first 200 on /healthz (load ${load()})`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const a = median(times['npm start']);
  const b = median(times['node dist/src/bin/esnap.js serve']);
  console.log(`median: npm start ${a.toFixed(0)} ms, bare serve ${b.toFixed(0)} ms, build checks +${(a - b).toFixed(0)} ms; target: npm start < 5000 ms: ${a < 5000 ? 'met' : 'NOT met'}`);
} finally {
  await rm(dataDir, { recursive: true, force: true });
}
