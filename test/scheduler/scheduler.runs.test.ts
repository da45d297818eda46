/**
 * Scheduled runs with Danube's behaviour (spec 8.1, 8.4): names, system user, task type `a`,
 * snapshot type 1, the definition linked, fsfreeze; exactly one run per slot; pausing and
 * schedule changes; retention after each success; failures with their task-log entries and alerts.
 * Time is a manual clock; the test calls tick() itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { ManualClock, autoSnapshots, define, defineByName, recordingLogger, settle } from './helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };

forEachDb('scheduler: Danube runs', (kind) => {
  const clock = new ManualClock('2026-01-05T09:59:30Z');
  const log = recordingLogger();
  let s: Server;
  let web: VmFixture;
  let frozen: VmFixture;
  beforeAll(async () => {
    s = await withServer(kind, { clock, log });
    web = await makeVm(s, 'web01', { disks: [1, 1] });
    frozen = await makeVm(s, 'db01', { disks: [1], qga: '/run/qga.sock' });
  });
  afterAll(() => s.cleanup());

  const tick = () => s.runtime.scheduler.tick();

  it('fires a due definition once per slot, as the system user, with task type a and snapshot type 1', async () => {
    const def = await define(s, 'web01', web.uuid, 'hourly', { schedule: '0 * * * *', retention: 2, disk_id: 2 });
    expect(def.next_run).toBe('2026-01-05T10:00:00.000Z');
    expect((await tick()).fired).toEqual([]);

    clock.set('2026-01-05T10:00:00Z');
    const r = await tick();
    expect(r.fired).toHaveLength(1);
    expect(r.fired[0]).toMatchObject({ define: 'hourly', vm: 'web01', slot: '2026-01-05T10:00:00.000Z', name: 'hourly-20260105_100000', late: false });
    // Danube's task id of the system user (7), automatic (a), owner 1, DC-bound in DC 1.
    expect(r.fired[0]!.taskId).toMatch(/^7a1d1-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$/);
    await settle(s);

    const again = await tick();
    expect(again.fired).toEqual([]);
    clock.set('2026-01-05T10:00:40Z');
    expect((await tick()).fired).toEqual([]);

    const snaps = await autoSnapshots(s, web.uuid);
    expect(snaps).toHaveLength(1);
    expect(snaps[0]).toMatchObject({ name: 'hourly-20260105_100000', type: 1, status: 1, define_id: def.id, disk_real_id: 1, fsfreeze: 0 });
    const task = await s.runtime.ctx.db.selectFrom('task').selectAll().where('id', '=', r.fired[0]!.taskId).executeTakeFirstOrThrow();
    expect({ type: task.type, user: task.user_id, state: task.state, kind: task.kind }).toEqual({ type: 'a', user: 7, state: 'SUCCESS', kind: 'snapshot_create' });
    // Two task-log rows, as Danube: PENDING with the request's detail, then the result's ("" for a create).
    const entries = await s.runtime.ctx.db.selectFrom('task_log').selectAll().where('task_id', '=', task.id).orderBy('id').execute();
    for (const entry of entries) expect(entry).toMatchObject({ username: '_system', msg: "Create snapshot of server's disk", task_type: 'a' });
    expect(entries.map((e) => [e.status, e.detail])).toEqual([
      ['PENDING', "snapname='hourly-20260105_100000', disk_id=2, type=1, fsfreeze=false"],
      ['SUCCESS', ''],
    ]);

    const row = await defineByName(s, web.uuid, 'hourly');
    expect(row).toMatchObject({ next_run: '2026-01-05T11:00:00.000Z', last_run: '2026-01-05T10:00:00.000Z', last_error: null });
    expect(row.last_success).toBe('2026-01-05T10:00:00.000Z');
    const x = await s.req('GET', '/api/vm/web01/define/snapshot/hourly/', { query: { disk_id: '2', extended: 'true' } });
    expect(x.body.result).toMatchObject({
      snapshots: 1,
      next_run: '2026-01-05T11:00:00Z',
      last_run: '2026-01-05T10:00:00Z',
      last_success: '2026-01-05T10:00:00Z',
      last_error: null,
    });
  });

  it('deletes the oldest OK snapshots beyond retention after each success, in one automatic task', async () => {
    for (const t of ['2026-01-05T11:00:00Z', '2026-01-05T12:00:00Z']) {
      clock.set(t);
      expect((await tick()).fired).toHaveLength(1);
      await settle(s);
    }
    await settle(s);
    const names = (await autoSnapshots(s, web.uuid)).map((x) => x.name);
    expect(names).toEqual(['hourly-20260105_110000', 'hourly-20260105_120000']);
    const del = await s.runtime.ctx.db.selectFrom('task').selectAll().where('kind', '=', 'snapshot_delete').execute();
    expect(del).toHaveLength(1);
    expect({ type: del[0]!.type, user: del[0]!.user_id, state: del[0]!.state }).toEqual({ type: 'a', user: 7, state: 'SUCCESS' });
    expect(del[0]!.log_detail).toBe("snapnames='hourly-20260105_100000', disk_id=2");
  });

  it('takes fsfreeze from the definition', async () => {
    const def = await define(s, 'db01', frozen.uuid, 'fr', { schedule: '5 12 * * *', retention: 0, fsfreeze: true });
    clock.set('2026-01-05T12:05:00Z');
    const r = await tick();
    expect(r.fired.map((f) => f.name)).toEqual(['fr-20260105_120500']);
    await settle(s);
    const [snap] = await autoSnapshots(s, frozen.uuid);
    expect(snap).toMatchObject({ define_id: def.id, fsfreeze: 1 });
    const entry = await s.runtime.ctx.db.selectFrom('task_log').select('detail').where('task_id', '=', r.fired[0]!.taskId).executeTakeFirstOrThrow();
    expect(entry.detail).toContain('fsfreeze=true');
  });

  it('pauses with active false and applies a schedule change at once', async () => {
    await define(s, 'web01', web.uuid, 'p', { schedule: '20 12 * * *', retention: 1 });
    expect((await s.req('PUT', '/api/vm/web01/define/snapshot/p/', { body: { active: false } })).status).toBe(200);
    expect((await defineByName(s, web.uuid, 'p')).next_run).toBeNull();
    clock.set('2026-01-05T12:20:00Z');
    expect((await tick()).fired).toEqual([]);

    expect((await s.req('PUT', '/api/vm/web01/define/snapshot/p/', { body: { active: true, schedule: '25 12 * * *' } })).status).toBe(200);
    expect((await defineByName(s, web.uuid, 'p')).next_run).toBe('2026-01-05T12:25:00.000Z');
    clock.set('2026-01-05T12:25:00Z');
    expect((await tick()).fired.map((f) => f.name)).toEqual(['p-20260105_122500']);
    await settle(s);
  });

  it('skips a slot while the previous automatic snapshot is still running, logs and counts it', async () => {
    const def = await define(s, 'web01', web.uuid, 'ov', { schedule: '*/10 * * * *', retention: 0 });
    // The definition's previous create, still running (what a slow storage would leave).
    await s.runtime.ctx.db
      .insertInto('task')
      .values({
        id: '7a1d1-00000000-0000-0000-0000', type: 'a', kind: 'snapshot_create', define_id: def.id, user_id: 7, owner_id: 1, dc_id: 1, vm_uuid: web.uuid,
        node_id: null, payload: '{}', context: JSON.stringify({ snapshotIds: [], diskArrayIds: [1], defineId: def.id, fsfreeze: false, name: 'ov-x', vmUuid: web.uuid }),
        node: 'elsewhere', apiview: '{}', state: 'STARTED', result: null, log_msg: '', log_detail: '', created: '2026-01-05T12:29:00Z', started: null, finished: null,
      })
      .execute();
    clock.set('2026-01-05T12:30:00Z');
    const r = await tick();
    expect(r.fired).toEqual([]);
    expect(r.skipped).toEqual([{ defineId: def.id, define: 'ov', vm: 'web01', slot: '2026-01-05T12:30:00.000Z', reason: 'overlap' }]);
    expect(log.messages('warn')).toContain('scheduled slot skipped: the previous automatic snapshot is still in progress');
    const text = (await s.req('GET', '/metrics')).text;
    expect(text).toContain('esnap_schedule_slots_skipped_total{vm="web01",disk="1",define="ov",reason="overlap"} 1');
    // The slot is not queued behind it: once the previous run ended, the next slot fires, not this one.
    await s.runtime.ctx.db.updateTable('task').set({ state: 'SUCCESS', finished: '2026-01-05T12:31:00Z' }).where('id', '=', '7a1d1-00000000-0000-0000-0000').execute();
    clock.set('2026-01-05T12:35:00Z');
    expect((await tick()).fired).toEqual([]);
    clock.set('2026-01-05T12:40:00Z');
    expect((await tick()).fired.map((f) => f.name)).toEqual(['ov-20260105_124000']);
    await settle(s);
    expect((await s.req('PUT', '/api/vm/web01/define/snapshot/ov/', { body: { active: false } })).status).toBe(200);
  });

  describe('failures (spec 8.1, 8.5)', () => {
    it('a run that cannot start writes the FAILURE entry and alerts; 423 only warns', async () => {
      const vm = await makeVm(s, 'web02', { disks: [1], limits: { snapshot_limit_auto: 0 } });
      await define(s, 'web02', vm.uuid, 'lim', { schedule: '0 13 * * *', retention: 1 });
      const down = await makeVm(s, 'web03', { disks: [1] });
      await define(s, 'web03', down.uuid, 'nr', { schedule: '0 13 * * *', retention: 1 });
      await s.runtime.ctx.db.updateTable('vm').set({ status: 9 }).where('uuid', '=', down.uuid).execute();
      clock.set('2026-01-05T13:00:00Z');
      const r = await tick();
      expect(r.fired.map((f) => f.define)).toEqual(['hourly']);
      await settle(s);
      expect(r.failed.map((f) => [f.vm, f.detail]).sort()).toEqual([
        ['web02', 'VM snapshot limit reached'],
        ['web03', 'VM is not operational'],
      ]);
      const entries = await s.runtime.ctx.db
        .selectFrom('task_log')
        .selectAll()
        .where('status', '=', 'FAILURE')
        .where('object_name', 'in', ['web02', 'web03'])
        .orderBy('object_name')
        .execute();
      expect(entries.map((e) => [e.object_name, e.msg, e.detail, e.username])).toEqual([
        ['web02', "Create snapshot of server's disk", 'snapname=lim-20260105_130000, disk_id=1, type=1. Error: VM snapshot limit reached', '_system'],
        ['web03', "Create snapshot of server's disk", 'snapname=nr-20260105_130000, disk_id=1, type=1. Error: VM is not operational', '_system'],
      ]);
      // A new id derived from the beat's: user 7, type e, owner 7, in the VM's DC.
      for (const e of entries) expect(e.task_id).toMatch(/^7e7d1-/);
      expect(log.messages('error')).toContain('Automatic snapshot web02/disk-1@lim failed to start.');
      expect(log.messages('error')).not.toContain('Automatic snapshot web03/disk-1@nr failed to start.');
      expect(log.lines.some((l) => l.level === 'warn' && l.msg === 'automatic snapshot not started' && (l.obj as { vm?: string }).vm === 'web03')).toBe(true);
      expect((await defineByName(s, vm.uuid, 'lim')).last_error).toBe('VM snapshot limit reached');
      // The slot is spent: no retry at the next tick.
      clock.set('2026-01-05T13:00:30Z');
      expect((await tick()).failed).toEqual([]);
      await s.runtime.ctx.db.updateTable('vm').set({ status: 1 }).where('uuid', '=', down.uuid).execute();
    });

    it('a failed task alerts, records last_error, and a later success clears it', async () => {
      const vm = await makeVm(s, 'web04', { disks: [1] });
      await define(s, 'web04', vm.uuid, 'gone', { schedule: '0 14 * * *', retention: 1 });
      const { rm, writeFile } = await import('node:fs/promises');
      await rm(vm.diskPaths[0]!);
      clock.set('2026-01-05T14:00:00Z');
      const r = await tick();
      const fired = r.fired.filter((f) => f.define === 'gone');
      expect(fired).toHaveLength(1);
      await settle(s);
      const task = await s.runtime.ctx.db.selectFrom('task').select(['state']).where('id', '=', fired[0]!.taskId).executeTakeFirstOrThrow();
      expect(task.state).toBe('FAILURE');
      expect(log.messages('error')).toContain('Automatic snapshot gone-20260105_140000 of server web04@disk-1 could not be created.');
      const failedRow = await defineByName(s, vm.uuid, 'gone');
      expect(failedRow.last_error).not.toBeNull();
      expect(failedRow.last_success).toBeNull();
      expect(await autoSnapshots(s, vm.uuid)).toEqual([]);

      await writeFile(vm.diskPaths[0]!, Buffer.alloc(1024 * 1024));
      // The failed run flagged the disk damaged (image missing): a sync that finds it whole clears it.
      expect((await s.req('POST', '/api/vm/web04/snapshot/probe/', { body: { disk_id: 1 } })).status).toBe(417);
      expect((await s.req('PUT', '/api/vm/web04/snapshot/', { body: { disk_id: 1 } })).status).toBe(201);
      await settle(s);
      clock.set('2026-01-06T14:00:00Z');
      expect((await tick()).fired.filter((f) => f.define === 'gone')).toHaveLength(1);
      await settle(s);
      const ok = await defineByName(s, vm.uuid, 'gone');
      expect(ok.last_error).toBeNull();
      expect(ok.last_success).toBe('2026-01-06T14:00:00.000Z');
    });
  });
});
