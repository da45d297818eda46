/**
 * Two servers on one PostgreSQL database and the backup scheduler's slot claim (as the snapshot
 * scheduler's, test/scheduler/slot-skip-locked.test.ts): a tick passes over the backup definitions
 * another server's claim holds (`FOR UPDATE SKIP LOCKED`) instead of waiting for that claim to
 * commit, and claims the others at once; the held ones are still due at the next tick; two
 * servers ticking the same slot at once fire each definition's slot exactly once (one backup task,
 * one `backup_slot` row).
 *
 * The "other server" of the first case is a transaction of the test that holds some definitions'
 * rows locked, as a claim does until its commit. Deterministic: the test asks PostgreSQL whether
 * the tick waits on that transaction (pg_blocking_pids) until the tick has ended; no timing. The
 * backup node bk1 has no agent, so the tasks stay queued.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startTestServer, testDatabases, withServer, type TestServer } from '../helpers/server.js';
import { addVm } from '../definitions/fixtures.js';
import { ManualClock } from '../scheduler/helpers.js';
import { addNode } from './fixtures.js';
import { doneOrBlocked } from '../helpers/pg-blocking.js';

const N = 6;
const SLOT = '2026-05-01T01:00:00.000Z';


const byId = (x: number, y: number) => x - y;

describe.runIf(testDatabases().includes('postgres'))('backup scheduler: servers split a slot with SKIP LOCKED [postgres]', () => {
  const clock = new ManualClock('2026-05-01T00:59:00Z');
  let a: TestServer & { cleanup(): Promise<void> };
  let b: Awaited<ReturnType<typeof startTestServer>>;
  const db = () => a.runtime.ctx.db;

  /** Backup definitions `daily` of VMs `<prefix>0..N-1` (one per VM: a backup locks its disk). */
  const define = async (prefix: string): Promise<number[]> => {
    const ids: number[] = [];
    for (let i = 0; i < N; i++) {
      const uuid = await addVm(a, `${prefix}${i}.test`);
      const r = await a.req('POST', `/api/vm/${prefix}${i}.test/define/backup/daily`, { body: { type: 2, node: 'bk1', zpool: 'files', schedule: '0 1 * * *', retention: 3 } });
      expect(r.status, r.text).toBe(201);
      ids.push((await db().selectFrom('backup_define').select('id').where('vm_uuid', '=', uuid).executeTakeFirstOrThrow()).id);
    }
    return ids;
  };
  /** Per definition of `ids`: its backup tasks and its rows of `slot` in `backup_slot`. */
  const perDefine = async (ids: number[], slot: string) => {
    const tasks = await db().selectFrom('task').select('context').where('kind', '=', 'backup_create').execute();
    const slots = await db().selectFrom('backup_slot').select(['define_id', 'state']).where('slot', '=', slot).execute();
    return ids.map((id) => ({
      id,
      tasks: tasks.filter((t) => (JSON.parse(t.context) as { defineId?: number }).defineId === id).length,
      slots: slots.filter((s) => s.define_id === id).map((s) => s.state),
    }));
  };

  beforeAll(async () => {
    a = await withServer('postgres', { clock });
    const info = (a as unknown as { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string } }).dbInfo;
    b = await startTestServer('postgres', { clock, reuse: info });
    await addNode(a, 'bk1', { files: 'file' });
  }, 120_000);
  afterAll(async () => {
    await b?.close();
    await a?.cleanup();
  });

  it('claims the definitions another claim does not hold, without waiting; the held ones fire at the next tick, each once', async () => {
    const ids = await define('sk');
    expect(new Set((await db().selectFrom('backup_define').select('next_run').execute()).map((d) => d.next_run))).toEqual(new Set([SLOT]));
    clock.set(SLOT);
    const held = ids.filter((_, i) => i % 3 === 1);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let holderPid!: number;
    let holding!: () => void;
    const holds = new Promise<void>((r) => (holding = r));
    const holder = db()
      .transaction()
      .execute(async (trx) => {
        holderPid = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)).rows[0]!.pid;
        await sql`SELECT id FROM backup_define WHERE id = ANY(${held}::integer[]) ORDER BY id FOR UPDATE`.execute(trx);
        holding();
        await released;
      });
    await holds;

    const tick = b.runtime.backupScheduler.tick();
    const outcome = await doneOrBlocked(tick, db(), holderPid);
    release();
    await holder;
    const report = await tick;
    expect(outcome).toBe('done');
    expect(report.failed).toEqual([]);
    expect(report.fired.map((f) => f.defineId).sort(byId)).toEqual(ids.filter((id) => !held.includes(id)));

    // The held definitions are still due (their holder wrote nothing): the next tick takes them.
    const rest = await a.runtime.backupScheduler.tick();
    expect(rest.failed).toEqual([]);
    expect(rest.fired.map((f) => f.defineId).sort(byId)).toEqual(held);
    expect(await perDefine(ids, SLOT)).toEqual(ids.map((id) => ({ id, tasks: 1, slots: ['fired'] })));
  }, 120_000);

  it('two servers ticking the same slot at once: each slot fires exactly once', async () => {
    const ids = await define('cc');
    // Their slot is due now too (created at 01:00, their next run is tomorrow's).
    await db().updateTable('backup_define').set({ next_run: SLOT }).where('id', 'in', ids).execute();
    const [ra, rb] = await Promise.all([a.runtime.backupScheduler.tick(), b.runtime.backupScheduler.tick()]);
    expect([...ra.failed, ...rb.failed]).toEqual([]);
    const fired = [...ra.fired, ...rb.fired].map((f) => f.defineId).sort(byId);
    expect(fired).toEqual(ids);
    expect(await perDefine(ids, SLOT)).toEqual(ids.map((id) => ({ id, tasks: 1, slots: ['fired'] })));
    // And nothing more on a second round.
    const again = await Promise.all([a.runtime.backupScheduler.tick(), b.runtime.backupScheduler.tick()]);
    expect(again.flatMap((r) => r.fired)).toEqual([]);
    expect(await perDefine(ids, SLOT)).toEqual(ids.map((id) => ({ id, tasks: 1, slots: ['fired'] })));
  }, 120_000);
});
