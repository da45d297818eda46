/**
 * Waiting instead of failing: a scheduled run, and a retention prune, that find the disk lock held
 * retry with backoff up to ESNAP_SCHEDULE_RETRY_S and then fail with the normal log and alert;
 * API calls keep Danube's immediate 400. The lock is held by a task_lock row, as a manual snapshot
 * or rollback in progress would hold it; time moves on the manual clock.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { runRetention } from '../../src/scheduler/retention.js';
import { getSlot } from '../../src/scheduler/slot.repository.js';
import { ManualClock, autoSnapshots, define, recordingLogger, settle } from './helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };

forEachDb('scheduler: waiting for the disk lock', (kind) => {
  const clock = new ManualClock('2026-02-01T09:59:00Z');
  const log = recordingLogger();
  let s: Server;
  let vm: VmFixture;
  beforeAll(async () => {
    s = await withServer(kind, { clock, log, scheduleRetryS: 120 });
    vm = await makeVm(s, 'lk1', { disks: [1] });
  });
  afterAll(() => s.cleanup());

  const lockKey = () => `vm_snapshot vm:${vm.uuid} disk:0`;
  const hold = () => s.runtime.ctx.db.insertInto('task_lock').values({ key: lockKey(), task_id: '1e1d1-aaaaaaaa-0000-0000-0000', created: clock.now().toISOString() }).execute();
  const release = () => s.runtime.ctx.db.deleteFrom('task_lock').where('key', '=', lockKey()).execute();

  /** Moves the manual clock from one sleep to the next until `p` resolves. */
  async function drive(p: Promise<unknown>): Promise<number> {
    let done = false;
    let steps = 0;
    void p.then(() => (done = true));
    while (!done) {
      const wake = clock.nextWake;
      if (wake === null) {
        await new Promise((r) => setTimeout(r, 2));
        continue;
      }
      clock.advance(wake);
      steps++;
    }
    return steps;
  }

  it('a scheduled run waits with backoff while API calls answer 400 at once, then runs', async () => {
    const def = await define(s, 'lk1', vm.uuid, 'lw', { schedule: '0 10 * * *', retention: 0 });
    await hold();
    clock.set('2026-02-01T10:00:00Z');
    const r = await s.runtime.scheduler.tick();
    expect(r.fired).toEqual([]);
    expect(r.waiting).toEqual([{ defineId: def.id, define: 'lw', vm: 'lk1', slot: '2026-02-01T10:00:00.000Z' }]);
    expect((await getSlot(s.runtime.ctx.db, def.id, '2026-02-01T10:00:00.000Z'))?.state).toBe('waiting');

    // API calls keep Danube's immediate answer.
    const manual = await s.req('POST', '/api/vm/lk1/snapshot/manual1/', { body: {} });
    expect(manual.status).toBe(400);
    expect(manual.body.result).toBe('Task did not acquire lock');
    const now = await s.req('POST', '/api/vm/lk1/define/snapshot/lw/run/', { body: {} });
    expect(now.status).toBe(400);
    expect(now.body).toMatchObject({ status: 'FAILURE', result: 'Task did not acquire lock' });

    // Backoff: 1 s, then 2 s, ...
    await clock.untilSleeping();
    expect(clock.nextWake).toBe(1000);
    clock.advance(1000);
    await clock.untilSleeping();
    expect(clock.nextWake).toBe(2000);
    await release();
    clock.advance(2000);
    await s.runtime.scheduler.idle();
    await settle(s);
    expect((await autoSnapshots(s, vm.uuid)).map((x) => x.name)).toEqual(['lw-20260201_100003']);
    expect((await getSlot(s.runtime.ctx.db, def.id, '2026-02-01T10:00:00.000Z'))?.state).toBe('fired');
    expect(log.messages('error').filter((m) => m.includes('failed to start'))).toEqual([]);
    // A new slot while it waited would have been an overlap; the next day's slot runs normally.
    expect((await s.req('PUT', '/api/vm/lk1/define/snapshot/lw/', { body: { active: false } })).status).toBe(200);
  });

  it('gives up after ESNAP_SCHEDULE_RETRY_S with the failure entry and alert of spec 8.1', async () => {
    const def = await define(s, 'lk1', vm.uuid, 'ld', { schedule: '0 11 * * *', retention: 0 });
    await hold();
    clock.set('2026-02-01T11:00:00Z');
    const r = await s.runtime.scheduler.tick();
    expect(r.waiting).toHaveLength(1);
    // A slot due while the run still waits is skipped as an overlap.
    expect((await s.req('PUT', '/api/vm/lk1/define/snapshot/ld/', { body: { schedule: '* * * * *' } })).status).toBe(200);
    clock.set('2026-02-01T11:01:00Z');
    const during = await s.runtime.scheduler.tick();
    expect(during.skipped.map((x) => x.reason)).toEqual(['overlap']);

    const steps = await drive(s.runtime.scheduler.idle());
    expect(steps).toBeGreaterThanOrEqual(3);
    expect(clock.now().getTime() - Date.parse('2026-02-01T11:00:00Z')).toBeGreaterThanOrEqual(120_000);
    expect(clock.now().getTime() - Date.parse('2026-02-01T11:00:00Z')).toBeLessThan(125_000);
    const entry = await s.runtime.ctx.db
      .selectFrom('task_log')
      .selectAll()
      .where('status', '=', 'FAILURE')
      .where('detail', 'like', 'snapname=ld-%')
      .executeTakeFirstOrThrow();
    expect(entry.detail).toMatch(/^snapname=ld-20260201_1102\d\d, disk_id=1, type=1\. Error: Task did not acquire lock$/);
    expect(log.messages('error')).toContain('Automatic snapshot lk1/disk-1@ld failed to start.');
    expect((await getSlot(s.runtime.ctx.db, def.id, '2026-02-01T11:00:00.000Z'))).toMatchObject({ state: 'failed', reason: 'Task did not acquire lock' });
    await release();
    expect((await s.req('PUT', '/api/vm/lk1/define/snapshot/ld/', { body: { active: false } })).status).toBe(200);
  });

  it('retention pruning waits for the lock the same way, and reports when it cannot start', async () => {
    const other = await makeVm(s, 'lk2', { disks: [1] });
    const def = await define(s, 'lk2', other.uuid, 'pr', { schedule: '0 * * * *', retention: 0 });
    for (const t of ['2026-02-01T13:00:00Z', '2026-02-01T14:00:00Z', '2026-02-01T15:00:00Z']) {
      clock.set(t);
      expect((await s.runtime.scheduler.tick()).fired.filter((f) => f.define === 'pr')).toHaveLength(1);
      await settle(s);
    }
    expect(await autoSnapshots(s, other.uuid)).toHaveLength(3);
    expect((await s.req('PUT', '/api/vm/lk2/define/snapshot/pr/', { body: { retention: 2, active: false } })).status).toBe(200);
    const key = `vm_snapshot vm:${other.uuid} disk:0`;
    await s.runtime.ctx.db.insertInto('task_lock').values({ key, task_id: '1e1d1-bbbbbbbb-0000-0000-0000', created: clock.now().toISOString() }).execute();

    await runRetention(s.runtime.ctx, def.id);
    await clock.untilSleeping();
    clock.advance(1000);
    await clock.untilSleeping();
    await s.runtime.ctx.db.deleteFrom('task_lock').where('key', '=', key).execute();
    clock.advance(2000);
    await s.runtime.scheduler.idle();
    await settle(s);
    expect((await autoSnapshots(s, other.uuid)).map((x) => x.name)).toEqual(['pr-20260201_140000', 'pr-20260201_150000']);

    // Held for good: after the limit, Danube's alert and FAILURE entry (spec 8.4).
    expect((await s.req('PUT', '/api/vm/lk2/define/snapshot/pr/', { body: { retention: 1 } })).status).toBe(200);
    await s.runtime.ctx.db.insertInto('task_lock').values({ key, task_id: '1e1d1-cccccccc-0000-0000-0000', created: clock.now().toISOString() }).execute();
    await runRetention(s.runtime.ctx, def.id);
    await drive(s.runtime.scheduler.idle());
    expect(log.messages('error')).toContain('Automatic deletion of old snapshots lk2/disk-1 failed to start.');
    const entry = await s.runtime.ctx.db
      .selectFrom('task_log')
      .selectAll()
      .where('msg', '=', "Delete snapshots of server's disk")
      .where('status', '=', 'FAILURE')
      .executeTakeFirstOrThrow();
    expect(entry.detail).toBe('hostname=lk2, snapnames=pr-20260201_140000, disk_id=1, Error: Task did not acquire lock');
    expect(entry.username).toBe('_system');
    // Under the id of the create task that triggered it (here: the definition's latest).
    const create = await s.runtime.ctx.db.selectFrom('task').select('id').where('id', '=', entry.task_id).executeTakeFirstOrThrow();
    expect(create.id).toMatch(/^7a1d1-/);
    await s.runtime.ctx.db.deleteFrom('task_lock').where('key', '=', key).execute();
  });
});
