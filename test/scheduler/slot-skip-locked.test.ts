/**
 * Two servers split a slot instead of taking turns (issue 17): on PostgreSQL a tick passes over
 * the due definitions another server's claim holds (`FOR UPDATE SKIP LOCKED`) and claims the
 * others at once, without waiting for that claim to commit; together every definition fires
 * exactly once.
 *
 * The "other server" is a transaction of the test that holds some due definitions' rows locked,
 * as a claim does until its commit. Deterministic: the test asks PostgreSQL whether the tick is
 * waiting on that transaction (pg_blocking_pids) until the tick has ended; no timing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startTestServer, testDatabases, withServer, type TestServer } from '../helpers/server.js';
import { seedIdleStorage, seedSlotDefinitions } from '../helpers/slot-seed.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { ManualClock } from './helpers.js';
import { doneOrBlocked } from '../helpers/pg-blocking.js';

const N = 60;
const SLOT = '2026-05-01T01:00:00.000Z';


describe.runIf(testDatabases().includes('postgres'))('scheduler: servers split a slot with SKIP LOCKED [postgres]', () => {
  const clock = new ManualClock('2026-05-01T00:59:00Z');
  let a: TestServer & { cleanup(): Promise<void> };
  let b: Awaited<ReturnType<typeof startTestServer>>;
  const ids: number[] = [];
  beforeAll(async () => {
    a = await withServer('postgres', { clock });
    const info = (a as unknown as { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string } }).dbInfo;
    b = await startTestServer('postgres', { clock, reuse: info });
    const db = a.runtime.ctx.db;
    const now = '2026-05-01T00:00:00.000Z';
    // A node without an agent: the tasks stay queued.
    const { nodeId, storageId } = await seedIdleStorage(db, 'idle-skip', now);
    await seedSlotDefinitions(db, { n: N, nodeId, storageId, nextRun: SLOT, schedule: '0 1 * * *', now, prefix: 'sk' });
    ids.push(...(await db.selectFrom('snapshot_define').select('id').orderBy('id').execute()).map((r) => r.id));
  }, 120_000);
  afterAll(async () => {
    await b?.close();
    await a?.cleanup();
  });

  it('claims the definitions another claim does not hold, without waiting, and together they fire each once', async () => {
    clock.set(SLOT);
    const db = a.runtime.ctx.db;
    // Every third definition, spread over the pages of 7 the second server reads.
    const held = ids.filter((_, i) => i % 3 === 1);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let holderPid!: number;
    let holding!: () => void;
    const holds = new Promise<void>((r) => (holding = r));
    const holder = db.transaction().execute(async (trx) => {
      holderPid = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)).rows[0]!.pid;
      await sql`SELECT id FROM snapshot_define WHERE id = ANY(${held}::integer[]) ORDER BY id FOR UPDATE`.execute(trx);
      holding();
      await released;
    });
    await holds;

    // Pages of 7, so the cursor passes held rows in several pages.
    const second = new Scheduler(b.runtime.ctx, b.runtime.ctx.automation, { batchSize: 7 });
    const tick = second.tick();
    const outcome = await doneOrBlocked(tick, db, holderPid);
    release();
    await holder;
    const report = await tick;
    expect(outcome).toBe('done');
    expect(report.errors).toBe(0);
    const firstIds = report.fired.map((f) => f.defineId).sort((x, y) => x - y);
    expect(firstIds).toEqual(ids.filter((id) => !held.includes(id)));

    // The held definitions are still due (their holder wrote nothing): the next tick takes them.
    const rest = await a.runtime.scheduler.tick();
    expect(rest.errors).toBe(0);
    expect(rest.fired.map((f) => f.defineId).sort((x, y) => x - y)).toEqual(held);

    const per = await db
      .selectFrom('snapshot')
      .select(['define_id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('type', '=', 1)
      .groupBy('define_id')
      .execute();
    expect(per).toHaveLength(N);
    expect(per.filter((r) => Number(r.n) !== 1)).toEqual([]);
    const tasks = await db.selectFrom('task').select('define_id').where('kind', '=', 'snapshot_create').execute();
    expect(tasks.map((t) => t.define_id).sort((x, y) => x! - y!)).toEqual(ids);
    const slots = await db.selectFrom('schedule_slot').select('define_id').where('slot', '=', SLOT).where('state', '=', 'fired').execute();
    expect(slots.map((s) => s.define_id).sort((x, y) => x - y)).toEqual(ids);
  }, 120_000);
});
