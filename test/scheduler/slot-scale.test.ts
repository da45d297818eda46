/**
 * Issue 17's short version of the big slot: 5,000 definitions due in the same minute (on
 * PostgreSQL two servers tick it at once) → every definition gets exactly one create task, one
 * pending snapshot row and, on PostgreSQL, one queue job. Counts only; the time is measured in
 * bench/scheduler.bench.ts. The VMs live on a node without an agent, so the tasks stay queued.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sql } from 'kysely';
import { forEachDb, startTestServer, withServer, type TestServer } from '../helpers/server.js';
import { bossSchemaFor, nodeQueueName } from '../../src/queue/pgboss.queue.js';
import { ManualClock } from './helpers.js';
import { seedIdleStorage, seedSlotDefinitions } from '../helpers/slot-seed.js';

const N = Number(process.env['ESNAP_TEST_SLOT_N'] ?? 5000);
const SLOT = '2026-05-01T01:00:00.000Z';

forEachDb('scheduler: one slot of many definitions', (kind) => {
  const clock = new ManualClock('2026-05-01T00:59:00Z');
  let a: TestServer & { cleanup(): Promise<void> };
  let b: Awaited<ReturnType<typeof startTestServer>> | null = null;
  let searchPath: string | undefined;
  beforeAll(async () => {
    a = await withServer(kind, { clock });
    const info = (a as unknown as { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string } }).dbInfo;
    searchPath = info.searchPath;
    if (kind === 'postgres') b = await startTestServer('postgres', { clock, reuse: info });
    const db = a.runtime.ctx.db;
    const now = '2026-05-01T00:00:00.000Z';
    // A node without an agent: the tasks stay queued.
    const { nodeId, storageId } = await seedIdleStorage(db, 'idle-scale', now);
    await seedSlotDefinitions(db, { n: N, nodeId, storageId, nextRun: SLOT, schedule: '0 1 * * *', now, prefix: 'sc' });
  }, 300_000);
  afterAll(async () => {
    await b?.close();
    await a.cleanup();
  });

  it(`queues exactly one create task, snapshot row and queue job per definition (${N})`, async () => {
    clock.set(SLOT);
    const reports = await Promise.all([a.runtime.scheduler.tick(), ...(b ? [b.runtime.scheduler.tick()] : [])]);
    for (const r of reports) expect(r.errors).toBe(0);
    expect(reports.reduce((n, r) => n + r.fired.length, 0)).toBe(N);
    const db = a.runtime.ctx.db;
    const per = await db
      .selectFrom('snapshot')
      .select(['define_id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('type', '=', 1)
      .groupBy('define_id')
      .execute();
    expect(per).toHaveLength(N);
    expect(per.filter((r) => Number(r.n) !== 1)).toEqual([]);
    const tasks = await db.selectFrom('task').select((eb) => eb.fn.countAll<number>().as('n')).where('kind', '=', 'snapshot_create').where('state', '=', 'PENDING').executeTakeFirstOrThrow();
    expect(Number(tasks.n)).toBe(N);
    const slots = await db.selectFrom('schedule_slot').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '=', 'fired').executeTakeFirstOrThrow();
    expect(Number(slots.n)).toBe(N);
    if (kind === 'postgres') {
      const jobs = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.ref(`${bossSchemaFor(searchPath)}.job`)} WHERE name = ${nodeQueueName('idle-scale')}`.execute(db);
      expect(jobs.rows[0]!.n).toBe(N);
    }
  }, 300_000);
});
