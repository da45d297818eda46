/**
 * A tick names its snapshots without looking names up first (issue 17: the lookup was 22 s of a
 * 100,000-definition slot): each run's name is `<define>-<tick time>`, unique per disk, and a name
 * that another create took already makes that run fail as before (406 `Snapshot already exists`,
 * the slot failed, the FAILURE entry), while the other runs of the slot fire.
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { getSlot } from '../../src/scheduler/slot.repository.js';
import { ManualClock, define, settle } from './helpers.js';

const SLOT = '2026-01-05T14:00:00.000Z';

forEachDb('scheduler: snapshot names of a slot', (kind) => {
  const clock = new ManualClock('2026-01-05T13:59:00Z');
  let s: TestServer & { cleanup(): Promise<void> };
  let one: VmFixture;
  let two: VmFixture;
  const sqls: string[] = [];
  beforeAll(async () => {
    s = await withServer(kind, { clock });
    one = await makeVm(s, 'nm01', { disks: [1, 1] });
    two = await makeVm(s, 'nm02', { disks: [1, 1] });
    for (const [vm, uuid, name, disk] of [
      ['nm01', one.uuid, 'd1', 1],
      ['nm01', one.uuid, 'd2', 2],
      ['nm02', two.uuid, 'd1', 1],
      ['nm02', two.uuid, 'd3', 2],
    ] as const) {
      await define(s, vm, uuid, name, { schedule: '0 14 * * *', retention: 5, disk_id: disk });
    }
    // A user's snapshot already holds the name d2's run will want (each definition has a disk of
    // its own: two runs of one slot on one disk would meet on its lock instead).
    const r = await s.req('POST', '/api/vm/nm01/snapshot/d2-20260105_140000/', { body: { disk_id: 2 } });
    expect(r.status, r.text).toBeLessThan(300);
    await settle(s);
    const executor = s.runtime.ctx.db.getExecutor();
    const run = executor.executeQuery.bind(executor);
    vi.spyOn(executor, 'executeQuery').mockImplementation((q) => {
      sqls.push(q.sql);
      return run(q);
    });
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await s.cleanup();
  });

  it('fires each definition under its own name without a name lookup; a taken name fails its run alone', async () => {
    clock.set(SLOT);
    sqls.length = 0;
    const r = await s.runtime.scheduler.tick();
    // No statement of the tick looked for snapshots by name.
    expect(sqls.filter((q) => /from "snapshot" where .*"name"/i.test(q))).toEqual([]);
    expect(r.errors).toBe(0);
    expect(r.fired.map((f) => `${f.vm}:${f.name}`).sort()).toEqual(['nm01:d1-20260105_140000', 'nm02:d1-20260105_140000', 'nm02:d3-20260105_140000']);
    expect(r.failed.map((f) => [f.vm, f.define, f.detail])).toEqual([['nm01', 'd2', 'Snapshot already exists']]);
    await settle(s);

    const db = s.runtime.ctx.db;
    const snaps = await db.selectFrom('snapshot').select(['vm_uuid', 'disk_real_id', 'name', 'type', 'status']).orderBy('vm_uuid').orderBy('disk_real_id').orderBy('name').execute();
    // Unique per disk, and the user's snapshot is the only one with d2's name, untouched.
    expect(new Set(snaps.map((x) => `${x.vm_uuid}/${x.disk_real_id}/${x.name}`)).size).toBe(snaps.length);
    expect(snaps.filter((x) => x.name === 'd2-20260105_140000')).toEqual([{ vm_uuid: one.uuid, disk_real_id: 1, name: 'd2-20260105_140000', type: 2, status: 1 }]);
    // Disk ids 1 and 2 are real ids 0 and 1.
    const label = (x: (typeof snaps)[number]) => `${x.vm_uuid === one.uuid ? 'nm01' : 'nm02'}/${x.disk_real_id}/${x.name}/${x.status}`;
    expect(snaps.filter((x) => x.type === 1).map(label).sort()).toEqual(['nm01/0/d1-20260105_140000/1', 'nm02/0/d1-20260105_140000/1', 'nm02/1/d3-20260105_140000/1']);

    const d2 = await db.selectFrom('snapshot_define').select(['id', 'last_error']).where('vm_uuid', '=', one.uuid).where('name', '=', 'd2').executeTakeFirstOrThrow();
    expect(d2.last_error).toBe('Snapshot already exists');
    expect((await getSlot(db, d2.id, SLOT))?.state).toBe('failed');
    const failure = await db.selectFrom('task_log').select('detail').where('status', '=', 'FAILURE').where('object_name', '=', 'nm01').execute();
    expect(failure.map((e) => e.detail)).toEqual(['snapname=d2-20260105_140000, disk_id=2, type=1. Error: Snapshot already exists']);
    // d2 left no task, lock or pending row behind.
    expect(await db.selectFrom('task').select('id').where('define_id', '=', d2.id).execute()).toEqual([]);
    expect(await db.selectFrom('task_lock').select('key').execute()).toEqual([]);
  });
});
