/**
 * A big slot's pages overlap on PostgreSQL (issue 17): the next page of due definitions is read,
 * planned and claimed while the previous page's transaction is still writing, instead of after its
 * commit, and the claim sets `last_run` in its compare-and-set statement (no second UPDATE, no lock
 * statement for rows the page read holds already). Each definition still fires exactly once.
 *
 * Deterministic: a transaction of the test holds the disk lock key of the first page's first
 * definition, so that page's lock insert waits on it (pg_blocking_pids says when); the test then
 * waits for the second page's slots to be committed (bounded, 60 s: before, the tick read no
 * second page until the first committed, so they never were) and lets the first page go on.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import { testDatabases, withServer, type TestServer } from '../helpers/server.js';
import { seedIdleStorage, seedSlotDefinitions } from '../helpers/slot-seed.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { diskLockKey } from '../../src/vms/vm.lookup.js';
import type { Database } from '../../src/db/schema.js';
import { ManualClock } from './helpers.js';

const N = 30;
const PAGE = 7;
const SLOT = '2026-05-01T01:00:00.000Z';

async function until(what: () => Promise<boolean>, boundMs: number): Promise<boolean> {
  const end = Date.now() + boundMs;
  while (Date.now() < end) {
    if (await what()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

describe.runIf(testDatabases().includes('postgres'))('scheduler: the pages of a slot overlap [postgres]', () => {
  const clock = new ManualClock('2026-05-01T00:59:00Z');
  let s: TestServer & { cleanup(): Promise<void> };
  let db: Kysely<Database>;
  const defs: Array<{ id: number; vm_uuid: string }> = [];
  beforeAll(async () => {
    s = await withServer('postgres', { clock });
    db = s.runtime.ctx.db;
    const now = '2026-05-01T00:00:00.000Z';
    // A node without an agent: the tasks stay queued.
    const { nodeId, storageId } = await seedIdleStorage(db, 'idle-pipe', now);
    await seedSlotDefinitions(db, { n: N, nodeId, storageId, nextRun: SLOT, schedule: '0 1 * * *', now, prefix: 'pp' });
    defs.push(...(await db.selectFrom('snapshot_define').select(['id', 'vm_uuid']).orderBy('id').execute()));
  }, 120_000);
  afterAll(async () => {
    await s?.cleanup();
  });

  it('claims the next page while the previous one is still writing; each definition fires once, last_run set in the claim', async () => {
    clock.set(SLOT);
    const first = defs[0]!;
    const secondPage = defs.slice(PAGE, 2 * PAGE).map((d) => d.id);
    // The statements of every connection of this process (the claim's run in transactions).
    const texts: string[] = [];
    const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
    const orig = proto.query;
    proto.query = function (this: unknown, ...args: unknown[]) {
      const q = args[0];
      texts.push(typeof q === 'string' ? q : ((q as { text?: string } | null)?.text ?? ''));
      return orig.apply(this, args);
    };
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let holderPid!: number;
    let holding!: () => void;
    const holds = new Promise<void>((r) => (holding = r));
    // Rolled back at the end: the key is free again and the first page goes on.
    const holder = db
      .transaction()
      .execute(async (trx) => {
        holderPid = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)).rows[0]!.pid;
        await trx.insertInto('task_lock').values({ key: diskLockKey(first.vm_uuid, 0), task_id: 'test-holder', created: SLOT }).execute();
        holding();
        await released;
        throw new Error('roll back');
      })
      .catch(() => undefined);
    await holds;
    try {
      const scheduler = new Scheduler(s.runtime.ctx, s.runtime.ctx.automation, { batchSize: PAGE });
      const tick = scheduler.tick();
      let ended = false;
      tick.then(
        () => (ended = true),
        () => (ended = true),
      );
      const waits = async () =>
        ended || (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${holderPid}::int = ANY(pg_blocking_pids(pid))`.execute(db)).rows[0]!.n > 0;
      expect(await until(waits, 60_000)).toBe(true);
      expect(ended).toBe(false);
      // The first page waits on the held key; the second page is claimed and committed meanwhile.
      const secondCommitted = async () =>
        (await db.selectFrom('schedule_slot').select('define_id').where('slot', '=', SLOT).where('define_id', 'in', secondPage).execute()).length === PAGE;
      expect(await until(secondCommitted, 60_000)).toBe(true);
      expect(ended).toBe(false);
      release();
      await holder;
      const report = await tick;
      expect(report.errors).toBe(0);
      expect(report.fired.map((f) => f.defineId).sort((x, y) => x - y)).toEqual(defs.map((d) => d.id));
    } finally {
      release();
      await holder;
      proto.query = orig;
    }

    // No `last_run` UPDATE of its own and no lock statement for the rows the page holds.
    expect(texts.filter((t) => /update "snapshot_define" set "last_run"/i.test(t))).toEqual([]);
    expect(texts.filter((t) => /select "id" from "snapshot_define" where "id" = ANY/i.test(t))).toEqual([]);
    const rows = await db.selectFrom('snapshot_define').select(['id', 'last_run', 'next_run']).orderBy('id').execute();
    expect(rows.filter((r) => r.last_run !== SLOT)).toEqual([]);
    expect(rows.filter((r) => r.next_run !== '2026-05-02T01:00:00.000Z')).toEqual([]);
    // Each definition once: one task, one snapshot row, one fired slot.
    const tasks = await db.selectFrom('task').select('define_id').where('kind', '=', 'snapshot_create').execute();
    expect(tasks.map((t) => t.define_id).sort((x, y) => x! - y!)).toEqual(defs.map((d) => d.id));
    const snaps = await db.selectFrom('snapshot').select('define_id').where('type', '=', 1).execute();
    expect(snaps.map((t) => t.define_id).sort((x, y) => x! - y!)).toEqual(defs.map((d) => d.id));
    const slots = await db.selectFrom('schedule_slot').select('define_id').where('slot', '=', SLOT).where('state', '=', 'fired').execute();
    expect(slots.map((r) => r.define_id).sort((x, y) => x - y)).toEqual(defs.map((d) => d.id));
  }, 180_000);
});
