/**
 * esnap's definition endpoints beyond Danube: run now (`POST …/run/`, Admin) and preview
 * (`GET …/preview/`, VM owners), over real HTTP on both databases.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm, type VmFixture } from '../helpers/fixtures.js';
import { ManualClock, autoSnapshots, define, defineByName, settle } from '../scheduler/helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };

const PREVIEW_KEYS = ['hostname', 'name', 'disk_id', 'active', 'schedule', 'tz', 'retention', 'retention_days', 'next_runs', 'retention_delete', 'retention_stopped'];

forEachDb('definitions: run now and preview', (kind) => {
  const clock = new ManualClock('2026-03-28T12:00:00Z');
  let s: Server;
  let vm: VmFixture;
  let owner: { id: number; key: string };
  let stranger: { id: number; key: string };
  beforeAll(async () => {
    s = await withServer(kind, { clock });
    owner = await makeUser(s, 'owner');
    stranger = await makeUser(s, 'stranger');
    vm = await makeVm(s, 'run01', { disks: [1, 1], ownerId: owner.id });
    await define(s, 'run01', vm.uuid, 'daily', { schedule: '30 2 * * *', tz: 'Europe/Bratislava', retention: 2, disk_id: 2 });
  });
  afterAll(() => s.cleanup());

  it('run now starts the automatic snapshot at once, with the scheduled naming and flow', async () => {
    const r = await s.req('POST', '/api/vm/run01/define/snapshot/daily/run/', { body: { disk_id: 2 } });
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('PENDING');
    // The calling admin (user 1) starts an automatic task (type a) on a VM of `owner`.
    expect(r.body.task_id).toMatch(new RegExp(`^1a${owner.id}d1-`));
    await settle(s);
    const snaps = await autoSnapshots(s, vm.uuid);
    expect(snaps).toMatchObject([{ name: 'daily-20260328_120000', type: 1, status: 1, disk_real_id: 1 }]);
    const row = await defineByName(s, vm.uuid, 'daily');
    expect(snaps[0]!.define_id).toBe(row.id);
    expect(row).toMatchObject({ last_run: '2026-03-28T12:00:00.000Z', last_success: '2026-03-28T12:00:00.000Z', last_error: null });
    // The schedule is untouched.
    expect(row.next_run).toBe('2026-03-29T01:00:00.000Z');
  });

  it('run now in the same second collides as Danube does (406), and keeps retention', async () => {
    const again = await s.req('POST', '/api/vm/run01/define/snapshot/daily/run', { body: { disk_id: 2 } });
    expect(again.status).toBe(406);
    expect(again.body).toEqual({ detail: 'Snapshot already exists' });
    for (const t of ['2026-03-28T12:01:00Z', '2026-03-28T12:02:00Z']) {
      clock.set(t);
      expect((await s.req('POST', '/api/dc/main/vm/run01/define/snapshot/daily/run/', { body: { disk_id: 2 } })).status).toBe(201);
      await settle(s);
    }
    expect((await autoSnapshots(s, vm.uuid)).map((x) => x.name)).toEqual(['daily-20260328_120100', 'daily-20260328_120200']);
  });

  it('run now needs an Admin, an existing definition and an operational VM', async () => {
    const asOwner = await s.req('POST', '/api/vm/run01/define/snapshot/daily/run/', { body: { disk_id: 2 }, key: owner.key });
    expect(asOwner.status).toBe(403);
    expect(asOwner.body).toEqual({ detail: 'Permission denied' });
    expect((await s.req('POST', '/api/vm/run01/define/snapshot/nope/run/', { body: { disk_id: 2 } })).body).toEqual({ detail: 'Snapshot definition not found' });
    expect((await s.req('POST', '/api/vm/run01/define/snapshot/daily/run/', { body: {} })).body).toEqual({ detail: 'Snapshot definition not found' });
    expect((await s.req('GET', '/api/vm/run01/define/snapshot/daily/run/')).status).toBe(405);
    await s.runtime.ctx.db.updateTable('vm').set({ status: 9 }).where('uuid', '=', vm.uuid).execute();
    const r = await s.req('POST', '/api/vm/run01/define/snapshot/daily/run/', { body: { disk_id: 2 } });
    expect(r.status).toBe(423);
    expect(r.body).toEqual({ detail: 'VM is not operational' });
    await s.runtime.ctx.db.updateTable('vm').set({ status: 1 }).where('uuid', '=', vm.uuid).execute();
    // The lookups come first, as for PUT: a body that is not an object names no disk (default 1).
    const bad = await s.req('POST', '/api/vm/run01/define/snapshot/daily/run/', { rawBody: '[2]', headers: { 'Content-Type': 'application/json' } });
    expect(bad.body).toEqual({ detail: 'Snapshot definition not found' });
  });

  it('preview shows the next five runs in UTC and in the zone, across the DST change', async () => {
    const r = await s.req('GET', '/api/vm/run01/define/snapshot/daily/preview/', { query: { disk_id: '2' }, key: owner.key });
    expect(r.status).toBe(200);
    expect(Object.keys(r.body.result)).toEqual(PREVIEW_KEYS);
    expect(r.body.result).toMatchObject({ hostname: 'run01', name: 'daily', disk_id: 2, active: true, schedule: '30 2 * * *', tz: 'Europe/Bratislava', retention: 2, retention_days: null });
    expect(r.body.result.next_runs).toEqual([
      { utc: '2026-03-29T01:00:00Z', local: '2026-03-29T03:00:00+02:00' },
      { utc: '2026-03-30T00:30:00Z', local: '2026-03-30T02:30:00+02:00' },
      { utc: '2026-03-31T00:30:00Z', local: '2026-03-31T02:30:00+02:00' },
      { utc: '2026-04-01T00:30:00Z', local: '2026-04-01T02:30:00+02:00' },
      { utc: '2026-04-02T00:30:00Z', local: '2026-04-02T02:30:00+02:00' },
    ]);
    expect(r.body.result).toMatchObject({ retention_delete: [], retention_stopped: false });
  });

  it('preview takes schedule, tz, retention and retention_days to show a change before it is made', async () => {
    const r = await s.req('GET', '/api/vm/run01/define/snapshot/daily/preview', {
      query: { disk_id: '2', schedule: '0 0 * * 1', tz: 'America/New_York', retention: '1', retention_days: '' },
    });
    expect(r.body.result).toMatchObject({ schedule: '0 0 * * 1', tz: 'America/New_York', retention: 1, retention_days: null });
    expect(r.body.result.next_runs.slice(0, 2)).toEqual([
      { utc: '2026-03-30T04:00:00Z', local: '2026-03-30T00:00:00-04:00' },
      { utc: '2026-04-06T04:00:00Z', local: '2026-04-06T00:00:00-04:00' },
    ]);
    expect(r.body.result.retention_delete).toEqual(['daily-20260328_120100']);
    // Nothing was changed.
    expect(await defineByName(s, vm.uuid, 'daily')).toMatchObject({ schedule: '30 2 * * *', tz: 'Europe/Bratislava', retention: 2 });
    expect((await autoSnapshots(s, vm.uuid)).map((x) => x.name)).toEqual(['daily-20260328_120100', 'daily-20260328_120200']);

    const never = await s.req('GET', '/api/vm/run01/define/snapshot/daily/preview/', { query: { disk_id: '2', schedule: '0 0 31 2 *' } });
    expect(never.status).toBe(400);
    expect(never.body.result).toEqual({ schedule: ['Schedule never fires.'] });
    clock.set('2026-05-01T00:00:00Z');
    const aged = await s.req('GET', '/api/vm/run01/define/snapshot/daily/preview/', { query: { disk_id: '2', retention: '0', retention_days: '7' } });
    expect(aged.body.result.retention_delete).toEqual(['daily-20260328_120100']);
  });

  it('preview validates its parameters with the definition field messages', async () => {
    const r = await s.req('GET', '/api/vm/run01/define/snapshot/daily/preview/', {
      query: { disk_id: '2', schedule: '99 * * * *', tz: 'Mars/Olympus', retention: 'x', retention_days: '0' },
    });
    expect(r.status).toBe(400);
    expect(r.body.status).toBe('FAILURE');
    expect(r.body.result).toEqual({
      schedule: ['Incorrect value in 1. column.'],
      retention: ['Enter a whole number.'],
      tz: ['Invalid time zone.'],
      retention_days: ['Ensure this value is greater than or equal to 1.'],
    });
    expect(Object.keys(r.body.result)).toEqual(['retention', 'schedule', 'tz', 'retention_days']);
  });

  it('preview is for VM owners and admins; others do not see the VM', async () => {
    expect((await s.req('GET', '/api/vm/run01/define/snapshot/daily/preview/', { query: { disk_id: '2' }, key: stranger.key })).body).toEqual({ detail: 'VM not found' });
    expect((await s.req('GET', '/api/vm/run01/define/snapshot/nope/preview/')).body).toEqual({ detail: 'Snapshot definition not found' });
    expect((await s.req('POST', '/api/vm/run01/define/snapshot/daily/preview/', { body: {} })).status).toBe(405);
    const opt = await s.req('OPTIONS', '/api/vm/run01/define/snapshot/daily/preview/');
    expect(opt.body.name).toBe('vm_define_snapshot_preview');
  });
});
