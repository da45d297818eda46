/**
 * The real prune after scheduled runs, with other snapshots around it: pinned, manual, pending
 * and lost ones are never pruned (and do not count), the newest OK snapshot survives any age
 * limit, and pruning stops while the definition's last run failed.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { rm, writeFile } from 'node:fs/promises';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { runRetention } from '../../src/scheduler/retention.js';
import { ManualClock, define, defineByName, settle } from './helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };

forEachDb('scheduler: retention', (kind) => {
  const clock = new ManualClock('2026-05-01T00:30:00Z');
  let s: Server;
  let vm: VmFixture;
  let defineId: number;
  beforeAll(async () => {
    s = await withServer(kind, { clock });
    vm = await makeVm(s, 'rt1', { disks: [1] });
  });
  afterAll(() => s.cleanup());

  const names = async () =>
    (await s.runtime.ctx.db.selectFrom('snapshot').select(['name', 'status']).where('vm_uuid', '=', vm.uuid).orderBy('id').execute()).map(
      (x) => (x.status === 1 ? x.name : `${x.name}(${x.status})`),
    );
  async function fire(at: string): Promise<void> {
    clock.set(at);
    await s.runtime.scheduler.tick();
    await settle(s);
  }

  it('prunes only OK, unpinned automatic snapshots of the definition beyond its count', async () => {
    defineId = (await define(s, 'rt1', vm.uuid, 'r', { schedule: '0 * * * *', retention: 2 })).id;
    expect((await s.req('POST', '/api/vm/rt1/snapshot/manual/', { body: {} })).status).toBe(201);
    await settle(s);
    const now = clock.now().toISOString();
    const row = { vm_uuid: vm.uuid, define_id: defineId, type: 1, storage_id: 1, size: null, note: '', fsfreeze: 0, pinned: 0, disk_real_id: 0, status_change: now, created: now, changed: now };
    await s.runtime.ctx.db.insertInto('snapshot').values([{ ...row, name: 'r-lost', status: 4 }, { ...row, name: 'r-pending', status: 2 }]).execute();

    await fire('2026-05-01T01:00:00Z');
    const pin = await s.req('PUT', '/api/vm/rt1/snapshot/r-20260501_010000/', { body: { pinned: true } });
    expect(pin.status).toBe(200);
    await fire('2026-05-01T02:00:00Z');
    await fire('2026-05-01T03:00:00Z');
    await fire('2026-05-01T04:00:00Z');
    expect(await names()).toEqual(['manual', 'r-lost(4)', 'r-pending(2)', 'r-20260501_010000', 'r-20260501_030000', 'r-20260501_040000']);
  });

  it('stops pruning while the last run failed, and resumes after a success', async () => {
    expect((await s.req('PUT', '/api/vm/rt1/define/snapshot/r/', { body: { retention: 1 } })).status).toBe(200);
    await rm(vm.diskPaths[0]!);
    await fire('2026-05-01T05:00:00Z');
    expect((await defineByName(s, vm.uuid, 'r')).last_error).not.toBeNull();
    const preview = await s.req('GET', '/api/vm/rt1/define/snapshot/r/preview/');
    expect(preview.body.result).toMatchObject({ retention_delete: [], retention_stopped: true });
    await runRetention(s.runtime.ctx, defineId);
    await settle(s);
    expect(await names()).toEqual(['manual', 'r-lost(4)', 'r-pending(2)', 'r-20260501_010000', 'r-20260501_030000', 'r-20260501_040000']);

    await writeFile(vm.diskPaths[0]!, Buffer.alloc(1024 * 1024));
    // The failed run found the image gone and flagged the disk damaged (src/vms/disk.damage.ts); a
    // sync finding it whole would clear that, but would also turn the hand-made pending row lost.
    await s.runtime.ctx.db.updateTable('vm_disk').set({ damaged: null }).where('vm_uuid', '=', vm.uuid).execute();
    await fire('2026-05-01T06:00:00Z');
    expect(await names()).toEqual(['manual', 'r-lost(4)', 'r-pending(2)', 'r-20260501_010000', 'r-20260501_060000']);
  });

  it('retention_days prunes old ones but never the newest OK snapshot', async () => {
    expect((await s.req('PUT', '/api/vm/rt1/define/snapshot/r/', { body: { retention: 0, retention_days: 1, active: false } })).status).toBe(200);
    // Ten days later the newest (and only unpinned) snapshot is old, and stays.
    clock.set('2026-05-11T06:30:00Z');
    const preview = await s.req('GET', '/api/vm/rt1/define/snapshot/r/preview/');
    expect(preview.body.result.retention_delete).toEqual([]);
    await runRetention(s.runtime.ctx, defineId);
    await settle(s);
    expect(await names()).toEqual(['manual', 'r-lost(4)', 'r-pending(2)', 'r-20260501_010000', 'r-20260501_060000']);
    // A new snapshot makes the old one due.
    expect((await s.req('PUT', '/api/vm/rt1/define/snapshot/r/', { body: { active: true } })).status).toBe(200);
    await fire('2026-05-11T07:00:00Z');
    expect(await names()).toEqual(['manual', 'r-lost(4)', 'r-pending(2)', 'r-20260501_010000', 'r-20260511_070000']);
  });
});
