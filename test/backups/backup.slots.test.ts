/**
 * The backup scheduler's slot history and `catchup`, as snapshot definitions have them: every
 * slot it acts on is a `backup_slot` row (fired, from cron or by catch-up; skipped because missed
 * or because the previous backup still runs; failed with the message when the backup cannot start
 * or its task fails), at most one per slot; `catchup: false` skips a late slot instead of firing
 * it; the VM's timeline marks the skipped and failed ones. The backup node bk1 has no agent, so the scheduled tasks wait until they are cancelled. On
 * SQLite and PostgreSQL.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { addVm } from '../definitions/fixtures.js';
import { addNode } from './fixtures.js';

const HOUR = 3_600_000;
/** 10:30 UTC: slots of the hourly schedule fall on the hour. */
const T0 = Date.parse('2026-12-06T10:30:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();

forEachDb('backup scheduler slots', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let nowMs = T0;
  const db = () => s.runtime.ctx.db;
  const slots = () => db().selectFrom('backup_slot').select(['slot', 'source', 'state', 'reason']).orderBy('slot').execute();
  const tasks = async () => (await db().selectFrom('task').select('id').where('kind', '=', 'backup_create').execute()).length;
  const setNextRun = (ms: number) => db().updateTable('backup_define').set({ next_run: iso(ms) }).execute();

  beforeAll(async () => {
    s = await withServer(kind, { clock: { now: () => new Date(nowMs) } });
    await addVm(s, 'bk.test');
    await addNode(s, 'bk1', { files: 'file' });
    const r = await s.req('POST', '/api/vm/bk.test/define/backup/hourly', { body: { type: 2, node: 'bk1', zpool: 'files', schedule: '0 * * * *', retention: 3 } });
    expect(r.status, r.text).toBe(201);
    expect(r.body.result.catchup).toBe(true);
  });
  afterAll(() => s?.cleanup());

  it('catch-up fires the most recent missed slot once and records it; the same slot never fires twice', async () => {
    // Down since 07:00: at 10:30 the 10:00 slot fires (late), 07:00-09:00 are missed.
    await setNextRun(T0 - 3.5 * HOUR);
    const report = await s.runtime.backupScheduler.tick();
    expect(report.fired).toHaveLength(1);
    expect(await slots()).toEqual([{ slot: iso(T0 - 0.5 * HOUR), source: 'catchup', state: 'fired', reason: null }]);
    expect((await db().selectFrom('backup_define').select('next_run').executeTakeFirstOrThrow()).next_run).toBe(iso(T0 + 0.5 * HOUR));
    // next_run set back to the recorded slot (a second server's stale read): refused by the slot's row.
    await setNextRun(T0 - 0.5 * HOUR);
    const again = await s.runtime.backupScheduler.tick();
    expect(again.fired).toEqual([]);
    expect(await slots()).toHaveLength(1);
    expect(await tasks()).toBe(1);
  });

  it('a slot on time while the previous backup still runs is skipped as overlap', async () => {
    nowMs = T0 + 0.5 * HOUR + 5000; // 11:00:05
    await setNextRun(T0 + 0.5 * HOUR);
    const report = await s.runtime.backupScheduler.tick();
    expect(report.skipped).toEqual([expect.objectContaining({ reason: 'overlap' })]);
    expect((await slots()).at(-1)).toEqual({ slot: iso(T0 + 0.5 * HOUR), source: 'cron', state: 'skipped', reason: 'overlap' });
    expect(await tasks()).toBe(1);
  });

  it("the failure of a fired slot's backup marks the slot failed with its message", async () => {
    const task = await db().selectFrom('task').select(['id', 'context']).where('kind', '=', 'backup_create').executeTakeFirstOrThrow();
    expect((JSON.parse(task.context) as { slot?: string }).slot).toBe(iso(T0 - 0.5 * HOUR));
    const c = await s.req('PUT', `/api/task/${task.id}/cancel/`, { body: {} });
    expect(c.body.status, c.text).toBe('REVOKED');
    let row = await db().selectFrom('backup_slot').selectAll().where('slot', '=', iso(T0 - 0.5 * HOUR)).executeTakeFirstOrThrow();
    for (let i = 0; i < 200 && row.state !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      row = await db().selectFrom('backup_slot').selectAll().where('slot', '=', iso(T0 - 0.5 * HOUR)).executeTakeFirstOrThrow();
    }
    expect(row.state).toBe('failed');
    expect(row.reason).toEqual(expect.any(String));
  });

  it('catchup false: a late slot is skipped as missed and nothing starts; a slot on time still fires', async () => {
    const put = await s.req('PUT', '/api/vm/bk.test/define/backup/hourly', { body: { catchup: false } });
    expect(put.status, put.text).toBe(200);
    expect(put.body.result.catchup).toBe(false);
    nowMs = T0 + 1.5 * HOUR + 600_000; // 12:10: the 12:00 slot is 10 minutes late
    await setNextRun(T0 + 1.5 * HOUR);
    const report = await s.runtime.backupScheduler.tick();
    expect(report.fired).toEqual([]);
    expect(report.skipped).toEqual([expect.objectContaining({ reason: 'missed' })]);
    expect((await slots()).at(-1)).toEqual({ slot: iso(T0 + 1.5 * HOUR), source: 'cron', state: 'skipped', reason: 'missed' });
    expect(await tasks()).toBe(1);
    nowMs = T0 + 2.5 * HOUR + 2000; // 13:00:02, on time
    const onTime = await s.runtime.backupScheduler.tick();
    expect(onTime.fired).toHaveLength(1);
    expect((await slots()).at(-1)).toEqual({ slot: iso(T0 + 2.5 * HOUR), source: 'cron', state: 'fired', reason: null });
  });

  it('a slot whose backup cannot start is recorded failed with the message', async () => {
    // The 13:00 backup out of the way (no overlap), then bk1 goes offline.
    for (const t of await db().selectFrom('task').select('id').where('kind', '=', 'backup_create').where('state', 'in', ['PENDING', 'STARTED']).execute()) {
      await s.req('PUT', `/api/task/${t.id}/cancel/`, { body: {} });
    }
    await db().updateTable('node').set({ status: 3 }).where('hostname', '=', 'bk1').execute();
    try {
      nowMs = T0 + 3.5 * HOUR + 2000; // 14:00:02
      const report = await s.runtime.backupScheduler.tick();
      expect(report.failed).toHaveLength(1);
      expect((await slots()).at(-1)).toEqual({ slot: iso(T0 + 3.5 * HOUR), source: 'cron', state: 'failed', reason: report.failed[0]!.detail });
    } finally {
      await db().updateTable('node').set({ status: 2 }).where('hostname', '=', 'bk1').execute();
    }
  });

  it("the VM's timeline shows the skipped and failed backup slots, marked as backup runs", async () => {
    const t = await s.req('GET', '/api/overview/vm/bk.test/timeline/');
    expect(t.status).toBe(200);
    const runs = (t.body.result.runs as { define: string; disk_id: number; slot: string; state: string; reason: string | null; backup?: boolean }[]).filter((r) => r.backup);
    const byHour = new Map(runs.map((r) => [new Date(r.slot).getTime(), r]));
    expect(byHour.get(T0 - 0.5 * HOUR)).toMatchObject({ define: 'hourly', disk_id: 1, state: 'failed' });
    expect(byHour.get(T0 + 0.5 * HOUR)).toMatchObject({ state: 'skipped', reason: 'overlap' });
    expect(byHour.get(T0 + 1.5 * HOUR)).toMatchObject({ state: 'skipped', reason: 'missed' });
    expect(byHour.get(T0 + 3.5 * HOUR)).toMatchObject({ state: 'failed' });
    // Fired slots that did not fail are not runs to mark.
    expect(runs.every((r) => r.state !== 'fired')).toBe(true);
  });

  it('prunes slot history older than a week', async () => {
    const old = iso(nowMs - 8 * 24 * HOUR);
    const def = await db().selectFrom('backup_define').select('id').executeTakeFirstOrThrow();
    await db().insertInto('backup_slot').values({ define_id: def.id, slot: old, source: 'cron', state: 'fired', reason: null, created: old, changed: old }).execute();
    const before = (await slots()).length;
    expect(await s.runtime.backupScheduler.pruneSlots()).toBe(1);
    expect((await slots()).length).toBe(before - 1);
  });
});
