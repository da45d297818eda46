/**
 * Leases on the servers' queues (src/queue/pgboss.queue.ts): a server killed (SIGKILL) while it
 * holds an `esnap.results` job must not leave the job active until pg-boss's expiry (300 s, the
 * task STARTED all that time); a surviving consumer takes it back once the lease lapses. A slow
 * handler that is alive keeps its job: nobody else handles it meanwhile.
 *
 * The holder is a real child process running the built queue (dist/), killed with SIGKILL.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PgBossQueue, RESULTS_QUEUE } from '../../src/queue/pgboss.queue.js';
import { silentLogger } from '../../src/runtime.js';
import { PG_URL } from '../helpers/server.js';
import { sleep } from '../helpers/esnap-process.js';

const schema = `t_${randomBytes(5).toString('hex')}_pgboss`;
const LEASE_S = 3;
const opened: PgBossQueue[] = [];

async function open(): Promise<PgBossQueue> {
  const q = await PgBossQueue.open({ connectionString: PG_URL, schema, role: 'server', log: silentLogger, pollIntervalMs: 300, leaseSeconds: LEASE_S });
  opened.push(q);
  return q;
}

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(100);
  }
  return cond();
}

/** A child process consuming the results queue with a handler that never returns; prints `took <data>`. */
function startHolder(): { took: Promise<string>; kill: () => Promise<void> } {
  const mod = join(process.cwd(), 'dist/src/queue/pgboss.queue.js');
  const script = `
    const { PgBossQueue, RESULTS_QUEUE } = await import(${JSON.stringify(mod)});
    const log = { info() {}, warn() {}, error() {}, debug() {}, child() { return log; } };
    const q = await PgBossQueue.open({ connectionString: ${JSON.stringify(PG_URL)}, schema: ${JSON.stringify(schema)}, role: 'server', log, pollIntervalMs: 300, leaseSeconds: ${LEASE_S} });
    await q.consume(RESULTS_QUEUE, (data) => { console.log('took ' + data.marker); return new Promise(() => {}); }, { discard: true });
    console.log('ready');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise<void>((r) => child.on('close', () => r()));
  const took = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /took (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then(() => reject(new Error(`holder exited before taking a job: ${out}`)));
  });
  const ready = new Promise<void>((resolve) => child.stdout.on('data', () => out.includes('ready') && resolve()));
  return {
    took: ready.then(() => took),
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

afterAll(async () => {
  for (const q of opened) await q.stop();
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await c.end();
});

describe('pg-boss leases on the results queue', () => {
  it('a results job held by a killed server is handled by a survivor, once, long before pg-boss expiry', async () => {
    const sender = await open();
    const holder = startHolder();
    await sleep(500);
    const marker = randomUUID();
    // Wait for the holder to be consuming, then send the one job it will take.
    const taken = holder.took;
    await sender.publish(RESULTS_QUEUE, { marker });
    expect(await taken).toBe(marker);
    await holder.kill();

    const survivor = await open();
    const got: string[] = [];
    await survivor.consume(RESULTS_QUEUE, async (data) => void got.push((data as { marker: string }).marker), { discard: true });
    // pg-boss alone hands the job back after 300 s; a lease of LEASE_S brings it back well within this.
    expect(await until(() => got.length > 0, 60_000)).toBe(true);
    await sleep(LEASE_S * 1000);
    expect(got).toEqual([marker]);
    await survivor.stopConsumer(RESULTS_QUEUE);
  }, 120_000);

  it('a handler slower than the lease keeps its job: a second consumer never gets it', async () => {
    const a = await open();
    const b = await open();
    const marker = randomUUID();
    const got: string[] = [];
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    await a.consume(
      RESULTS_QUEUE,
      async (data) => {
        got.push(`a:${(data as { marker: string }).marker}`);
        await slow;
      },
      { discard: true },
    );
    await a.publish(RESULTS_QUEUE, { marker });
    expect(await until(() => got.length > 0, 30_000)).toBe(true);
    await b.consume(RESULTS_QUEUE, async (data) => void got.push(`b:${(data as { marker: string }).marker}`), { discard: true });
    // Three leases long: without renewal the job would lapse and b would take it.
    await sleep(LEASE_S * 3 * 1000);
    release();
    await a.stopConsumer(RESULTS_QUEUE);
    await sleep(1000);
    expect(got).toEqual([`a:${marker}`]);
    await b.stopConsumer(RESULTS_QUEUE);
  }, 120_000);
});
