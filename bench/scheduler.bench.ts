/**
 * Issue 4 benchmark, on the embedded default (SQLite, in-process queue, local agent, file storage):
 * 1. 10,000 definitions due in the same minute (10,000 VMs, one 1 MiB disk each): time from the
 *    slot until every create task is queued (target < 5 s), and until every snapshot exists;
 *    baselines: the bare cost of inserting 10,000 task rows, one transaction each and all in one;
 *    and the submission path alone: N no-op tasks through TaskService.submit (one transaction each,
 *    as ticks submitted before) and through submitMany (one transaction, a savepoint per task);
 * 2. the scheduler while nothing is due (the same 10,000 definitions, next runs a day away):
 *    process CPU over a minute with the loop running vs. the same minute with it stopped, and the
 *    cost of one tick that finds nothing due.
 *
 * Run: npx tsc -p tsconfig.json && node --expose-gc dist/bench/scheduler.bench.js [definitions]
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { sql } from 'kysely';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { fmt, percentile } from './lib.js';
import type { TaskSpec } from '../src/tasks/task.types.js';
import { bossSchemaFor, nodeQueueName } from '../src/queue/pgboss.queue.js';
import { dialectOf } from '../src/db/capabilities.js';

const KEY = 'bench-admin-key-0123456789abcdef';
const N = Number(process.argv[2] ?? 10_000);
const MINUTE = 60_000;

async function setup(rt: Runtime, root: string, slot: Date): Promise<void> {
  const db = rt.ctx.db;
  const node = await db.selectFrom('node').selectAll().executeTakeFirstOrThrow();
  const storage = await db.selectFrom('node_storage').selectAll().executeTakeFirstOrThrow();
  const now = new Date().toISOString();
  const schedule = `${slot.getUTCMinutes()} ${slot.getUTCHours()} * * *`;
  for (let i = 0; i < N; i += 500) {
    const vms = Array.from({ length: Math.min(500, N - i) }, (_, k) => ({ uuid: randomUUID(), hostname: `vm${i + k}` }));
    await db
      .insertInto('vm')
      .values(
        vms.map((v) => ({
          uuid: v.uuid, hostname: v.hostname, alias: v.hostname, dc_id: 1, owner_id: 1, node_id: node.id, brand: 'kvm', status: 2,
          status_change: now, qmp_socket: null, qga_socket: null, snapshot_limit_manual: null, snapshot_limit_auto: null,
          snapshot_size_limit: null, snapshot_size_percent_limit: null, created: now, changed: now,
        })),
      )
      .execute();
    await db
      .insertInto('vm_disk')
      .values(vms.map((v) => ({ vm_uuid: v.uuid, real_id: 0, storage_id: storage.id, path: `${v.uuid}-disk0`, size_mb: 1, created: now })))
      .execute();
    await db
      .insertInto('snapshot_define')
      .values(
        vms.map((v) => ({
          vm_uuid: v.uuid, disk_real_id: 0, name: 'daily', desc: '', schedule, retention: 7, active: 1, fsfreeze: 0, tz: 'UTC',
          catchup: 1, retention_days: null, next_run: slot.toISOString(), last_run: null, last_success: null, last_error: null,
          created: now, changed: now,
        })),
      )
      .execute();
    await Promise.all(
      vms.map(async (v) => {
        const fh = await open(join(root, `${v.uuid}-disk0`), 'w');
        await fh.truncate(1024 * 1024);
        await fh.write(Buffer.alloc(4096, 1), 0, 4096, 0);
        await fh.close();
      }),
    );
  }
}

/** The floor: N task rows, inserted the way a submission inserts one (one transaction each), and all at once. */
async function taskRowBaseline(rt: Runtime): Promise<{ each: number; bulk: number; n: number }> {
  const n = Math.min(N, 1000);
  const db = rt.ctx.db;
  const row = (i: number, prefix: string) => ({
    id: `${prefix}-${String(i).padStart(8, '0')}-0000-0000-0000`, type: 'a', kind: 'noop', user_id: 7, owner_id: 1, dc_id: 1,
    vm_uuid: null, node_id: null, payload: '{}', context: '{}', node: 'nowhere', apiview: '{}', state: 'SUCCESS', result: null,
    log_msg: '', log_detail: '', created: new Date().toISOString(), started: null, finished: null,
  });
  let t0 = performance.now();
  for (let i = 0; i < n; i++) await db.transaction().execute((trx) => trx.insertInto('task').values(row(i, '7a1d1-base')).execute());
  const each = performance.now() - t0;
  t0 = performance.now();
  await db.transaction().execute(async (trx) => {
    for (let i = 0; i < n; i += 500) await trx.insertInto('task').values(Array.from({ length: Math.min(500, n - i) }, (_, k) => row(i + k, '7a1d1-bulk'))).execute();
  });
  const bulk = performance.now() - t0;
  await db.deleteFrom('task').where('kind', '=', 'noop').execute();
  return { each, bulk, n };
}

/**
 * The submission path itself, on tasks that do nothing (no snapshot rows, a node without an
 * agent): TaskService.submit, one transaction per task as ticks submitted before, against
 * submitMany, one transaction with a savepoint per task as ticks submit now.
 */
async function submitBaseline(rt: Runtime): Promise<{ each: number; many: number }> {
  const tasks = rt.ctx.tasks;
  const node = await rt.ctx.db.selectFrom('node').select('id').executeTakeFirstOrThrow();
  tasks.registerKind('bench_noop', { complete: async () => ({ result: { returncode: 0, message: '' } }) });
  const spec = (i: number, prefix: string): TaskSpec<unknown> => ({
    kind: 'bench_noop', type: 'a', userId: 1, username: 'admin', ownerId: 1, dcId: 1, dcBound: true, vmUuid: null,
    node: { id: node.id, hostname: 'bench-nowhere' }, locks: [`bench ${prefix} ${i}`], apiview: { view: 'bench' },
    log: { msg: 'bench', detail: '', object: { type: 'vm', name: 'bench', alias: 'bench', pk: 'bench' } },
    prepare: async () => ({ payload: {}, context: {} }),
  });
  let t0 = performance.now();
  for (let i = 0; i < N; i++) await tasks.submit(spec(i, 'each'));
  const each = performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < N; i += 500) {
    const results = await tasks.submitMany(Array.from({ length: Math.min(500, N - i) }, (_, k) => spec(i + k, 'many')));
    if (results.some((r) => !r.ok)) throw new Error('a baseline submission failed');
  }
  const many = performance.now() - t0;
  const ids = (await rt.ctx.db.selectFrom('task').select('id').where('kind', '=', 'bench_noop').execute()).map((r) => r.id);
  for (let i = 0; i < ids.length; i += 500) {
    const chunk = ids.slice(i, i + 500);
    await rt.ctx.db.deleteFrom('task_lock').where('task_id', 'in', chunk).execute();
    await rt.ctx.db.deleteFrom('task_log').where('task_id', 'in', chunk).execute();
    await rt.ctx.db.deleteFrom('task').where('id', 'in', chunk).execute();
  }
  return { each, many };
}

async function cpuOver(ms: number): Promise<number> {
  const before = process.cpuUsage();
  await new Promise((r) => setTimeout(r, ms));
  const d = process.cpuUsage(before);
  return (d.user + d.system) / 1000;
}

/** Where the runtime's database lives: SQLite in a temporary folder, or a fresh schema in ESNAP_DATABASE_URL. */
async function openRuntime(dir: string, root: string, localAgent: boolean, schema: string | null): Promise<Runtime> {
  const pgUrl = process.env['ESNAP_DATABASE_URL'];
  return createRuntime({
    databaseUrl: pgUrl ?? `sqlite:${join(dir, 'esnap.db')}`, ...(pgUrl && schema ? { searchPath: schema } : {}),
    adminApiKey: KEY, node: 'bench', localAgent, storages: [{ name: 'default', driver: 'file', root }], scheduler: false,
  });
}

/**
 * BENCH_SQL_STATS=1 (PostgreSQL): round trips and client-side time per statement shape during the
 * tick, from node-postgres itself (pg_stat_statements is not loaded on this machine's server).
 */
async function sqlStats(): Promise<{ reset(): void; print(): void } | null> {
  if (!process.env['BENCH_SQL_STATS']) return null;
  const pg = (await import('pg')).default;
  const stats = new Map<string, { n: number; ms: number }>();
  const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const orig = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const q = args[0];
    const text = typeof q === 'string' ? q : ((q as { text?: string } | null)?.text ?? '?');
    const key = text.replace(/\s+/g, ' ').replace(/\$\d+(, )?/g, '').slice(0, 90);
    const t0 = performance.now();
    const done = () => {
      const e = stats.get(key) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += performance.now() - t0;
      stats.set(key, e);
    };
    const r = orig.apply(this, args);
    if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(done, done);
    return r;
  };
  return {
    reset: () => stats.clear(),
    print: () => {
      const all = [...stats.entries()].sort((a, b) => b[1].ms - a[1].ms);
      const n = all.reduce((x, [, e]) => x + e.n, 0);
      console.log(`  statements during the tick: ${n} round trips; by client-side time:`);
      for (const [k, e] of all.slice(0, 12)) console.log(`    ${String(e.n).padStart(7)} × ${fmt(e.ms / e.n, 2).padStart(7)} ms = ${fmt(e.ms / 1000, 2).padStart(6)} s  ${k}`);
    },
  };
}

/** Tasks made per definition for the slot, read back: none (missing) or more than one (doubled); and queue jobs. */
async function countBack(rt: Runtime, slotIso: string, schema: string | null): Promise<{ missing: number; doubled: number; tasks: number; jobs: number | null }> {
  const db = rt.ctx.db;
  const defs = await db.selectFrom('snapshot_define').select('id').execute();
  const made = await db
    .selectFrom('snapshot')
    .select(['define_id', (eb) => eb.fn.countAll<number>().as('n')])
    .where('type', '=', 1)
    .where('define_id', 'is not', null)
    .groupBy('define_id')
    .execute();
  const per = new Map(made.map((r) => [r.define_id!, Number(r.n)]));
  let missing = 0;
  let doubled = 0;
  for (const d of defs) {
    const n = per.get(d.id) ?? 0;
    if (n === 0) missing++;
    if (n > 1) doubled++;
  }
  const tasks = Number(
    (await db.selectFrom('task').select((eb) => eb.fn.countAll<number>().as('n')).where('kind', '=', 'snapshot_create').where('created', '>=', slotIso).executeTakeFirstOrThrow()).n,
  );
  let jobs: number | null = null;
  if (dialectOf(db) === 'postgres') {
    const r = await sql<{ n: number }>`SELECT count(DISTINCT id)::int AS n FROM ${sql.ref(`${bossSchemaFor(schema ?? undefined)}.job`)} WHERE name = ${nodeQueueName('bench')}`.execute(db);
    jobs = Number(r.rows[0]?.n ?? 0);
  }
  return { missing, doubled, tasks, jobs };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-sched-bench-'));
  const root = join(dir, 'storage');
  const pgUrl = process.env['ESNAP_DATABASE_URL'];
  const servers = Number(process.env['BENCH_SERVERS'] ?? 1);
  // Waiting for every snapshot: by default only for small N (the file driver makes them one by one).
  const waitSnapshots = (process.env['BENCH_SNAPSHOTS'] ?? (N <= 2000 ? '1' : '0')) === '1';
  const schema = pgUrl ? `bench_sched_${process.pid}` : null;
  let admin: import('pg').Client | null = null;
  if (pgUrl && schema) {
    const pg = (await import('pg')).default;
    admin = new pg.Client({ connectionString: pgUrl });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
  }
  const rt = await openRuntime(dir, root, true, schema);
  // Without the wait, the local agent (which registers the node) stops taking tasks, so the tick
  // is measured alone; the in-process queue (SQLite) just keeps the messages.
  if (!waitSnapshots) await rt.cluster?.queue.stopConsumer(nodeQueueName('bench'));
  const others: Runtime[] = [];
  for (let i = 1; i < servers; i++) others.push(await openRuntime(dir, root, false, schema));
  const stats = await sqlStats();
  const where = `${pgUrl ? 'PostgreSQL' : 'SQLite'}, ${servers} server${servers > 1 ? 's' : ''}`;
  try {
    // The per-row baselines take one transaction per row: measured on at most 1,000 rows.
    const baseline = await taskRowBaseline(rt);
    const submitted = N <= 2000 ? await submitBaseline(rt) : null;
    // The slot: the first minute boundary at least 30 s away (more for big N), so set-up is done before it.
    // BENCH_LEAD_MS: a shorter lead when the set-up is known to be quick.
    const lead = Number(process.env['BENCH_LEAD_MS'] ?? Math.max(30_000, N * 3));
    const slot = new Date(Math.ceil((Date.now() + lead) / MINUTE) * MINUTE);
    const t0 = performance.now();
    await setup(rt, root, slot);
    console.log(`set-up (${where}): ${N} VMs, disks and definitions in ${fmt((performance.now() - t0) / 1000)} s; slot ${slot.toISOString()}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    if (slot.getTime() < Date.now()) throw new Error('set-up ran past the slot; run again');

    // The loop wakes 5 ms after the boundary; here the tick is started at the boundary itself,
    // in every server at once when there are several (they race for the same slot).
    await new Promise((r) => setTimeout(r, slot.getTime() - Date.now()));
    stats?.reset();
    const started = Date.now();
    const reports = await Promise.all([rt, ...others].map((x) => x.scheduler.tick()));
    const queued = Date.now() - slot.getTime();
    const tickMs = Date.now() - started;
    const fired = reports.reduce((n, r) => n + r.fired.length, 0);
    console.log(`\n${N} definitions due in the same minute (${where}):`);
    console.log(`  slot → all ${N} create tasks queued: ${fmt(queued / 1000, 2)} s (tick ${fmt(tickMs / 1000, 2)} s; fired ${reports.map((r) => r.fired.length).join(' + ')}; target < 10 s on PostgreSQL for 100,000)`);
    stats?.print();
    const rssAfterTick = process.memoryUsage().rss;
    const counts = await countBack(rt, slot.toISOString(), schema);
    console.log(
      `  read back: ${counts.tasks} create tasks, ${N - counts.missing} definitions with a snapshot row; missing ${counts.missing}, doubled ${counts.doubled}` +
        `${counts.jobs === null ? '' : `; ${counts.jobs} queue jobs in pg-boss`}`,
    );
    if (fired !== N || counts.missing !== 0 || counts.doubled !== 0) throw new Error(`fired ${fired} of ${N}; missing ${counts.missing}, doubled ${counts.doubled}`);
    if (pgUrl) {
      const size = await sql<{ s: string }>`SELECT pg_size_pretty(pg_database_size(current_database())) AS s`.execute(rt.ctx.db);
      console.log(`  RSS after the tick: ${fmt(rssAfterTick / 1024 / 1024, 0)} MiB; database size ${size.rows[0]?.s}`);
    } else console.log(`  RSS after the tick: ${fmt(rssAfterTick / 1024 / 1024, 0)} MiB`);
    console.log(`  baseline, ${baseline.n} bare task-row inserts: ${fmt(baseline.each / 1000, 2)} s one transaction each, ${fmt(baseline.bulk / 1000, 2)} s in one transaction`);
    if (submitted) {
      console.log(`  baseline, ${N} no-op task submissions: ${fmt(submitted.each / 1000, 2)} s with submit (one transaction each), ${fmt(submitted.many / 1000, 2)} s with submitMany`);
    }
    // The tick writes its rows in batches, so its floor is the bulk insert, not one transaction per row.
    console.log(
      `  scheduler cost per definition: ${fmt((tickMs * 1000) / N, 0)} µs against ${fmt((baseline.bulk * 1000) / baseline.n, 0)} µs per bare task row inserted in bulk ` +
        `(${fmt(tickMs / N / (baseline.bulk / baseline.n), 1)}× the bulk floor; a run writes ~6 rows: task, log, lock, snapshot, slot, queue job)`,
    );
    if (!waitSnapshots) return;
    for (;;) {
      const row = await rt.ctx.db
        .selectFrom('task')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('kind', '=', 'snapshot_create')
        .where('state', 'in', ['PENDING', 'STARTED'])
        .executeTakeFirstOrThrow();
      if (Number(row.n) === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const allDone = Date.now() - slot.getTime();
    const ok = await rt.ctx.db
      .selectFrom('snapshot')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('type', '=', 1)
      .where('status', '=', 1)
      .executeTakeFirstOrThrow();
    if (Number(ok.n) !== N) throw new Error(`only ${ok.n} of ${N} snapshots exist`);
    console.log(`  slot → all ${N} snapshots exist:     ${fmt(allDone / 1000, 1)} s (${fmt(N / (allDone / 1000), 1)} snapshots/s; agent concurrency 4, file driver)`);
    if (pgUrl || process.env['BENCH_IDLE'] === '0') return;

    // Nothing due: every next run is a day away now.
    const idleTicks: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await rt.scheduler.tick();
      idleTicks.push(performance.now() - t);
    }
    idleTicks.sort((a, b) => a - b);
    const staleChecks: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await rt.scheduler.checkStale();
      staleChecks.push(performance.now() - t);
    }
    staleChecks.sort((a, b) => a - b);
    // V8 collects the burst's garbage on its own some seconds after activity stops (its memory
    // reducer); a forced collection and a pause keep that out of the windows.
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    await new Promise((r) => setTimeout(r, 20_000));
    const windowMs = 61_000;
    const without = await cpuOver(windowMs);
    // Started, then measured after its start-up tick and stale check: minutes of steady state.
    rt.scheduler.start();
    await new Promise((r) => setTimeout(r, 2000));
    gc?.();
    await new Promise((r) => setTimeout(r, 20_000));
    const withLoop = [await cpuOver(windowMs), await cpuOver(windowMs)];
    await rt.scheduler.stop();
    console.log(`\nnothing due (${N} definitions, next runs a day away), process CPU per ${windowMs / 1000} s window${gc ? '' : ' (run with node --expose-gc for steadier figures)'}:`);
    console.log(`  scheduler loop stopped (baseline): ${fmt(without, 1)} ms`);
    for (const w of withLoop) console.log(`  scheduler loop running:           ${fmt(w, 1)} ms (${fmt((100 * Math.max(0, w - without)) / windowMs, 4)} % of one core above the baseline)`);
    console.log(`  one tick with nothing due: p50 ${fmt(percentile(idleTicks, 50), 2)} ms, p99 ${fmt(percentile(idleTicks, 99), 2)} ms (the loop ticks once a minute)`);
    console.log(`  stale check of ${N} definitions: p50 ${fmt(percentile(staleChecks, 50), 1)} ms (the loop runs it every 5 minutes)`);
  } finally {
    for (const o of others) await o.close();
    await rt.close();
    if (admin && schema) {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.query(`DROP SCHEMA IF EXISTS ${bossSchemaFor(schema)} CASCADE`);
      await admin.end();
    }
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
