/**
 * Definitions in a time zone across DST changes, ticked like the loop would (every minute around
 * the change, and at every next run): a local time that does not exist fires once at the next
 * valid instant, a local time that occurs twice fires once, and names stay in UTC.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';
import { ManualClock, autoSnapshots, define, settle } from './helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };

const MIN = 60_000;

forEachDb('scheduler: time zones and DST', (kind) => {
  const clock = new ManualClock('2026-03-01T00:00:00Z');
  let s: Server;
  beforeAll(async () => {
    s = await withServer(kind, { clock });
  });
  afterAll(() => s.cleanup());

  /**
   * Ticks from the clock's time to `to`: every `stepMin` minutes (every minute inside `dense`),
   * and at each definition's next run in between. Returns the slots fired for `defineId`.
   */
  async function walk(defineId: number, to: string, stepMin: number, dense?: [string, string]): Promise<Array<{ slot: string; name: string }>> {
    const fired: Array<{ slot: string; name: string }> = [];
    const end = Date.parse(to);
    for (;;) {
      const r = await s.runtime.scheduler.tick();
      for (const f of r.fired) if (f.defineId === defineId) fired.push({ slot: f.slot, name: f.name });
      if (r.fired.length > 0) await settle(s);
      const now = clock.now().getTime();
      if (now >= end) return fired;
      const inDense = dense !== undefined && now >= Date.parse(dense[0]) && now < Date.parse(dense[1]);
      let next = now + (inDense ? 1 : stepMin) * MIN;
      const row = await s.runtime.ctx.db.selectFrom('snapshot_define').select('next_run').where('id', '=', defineId).executeTakeFirstOrThrow();
      if (row.next_run !== null && Date.parse(row.next_run) > now) next = Math.min(next, Date.parse(row.next_run));
      clock.set(new Date(Math.min(next, end)));
    }
  }

  async function pause(vm: string, name: string): Promise<void> {
    expect((await s.req('PUT', `/api/vm/${vm}/define/snapshot/${name}/`, { body: { active: false } })).status).toBe(200);
  }

  it('America/New_York, spring forward: 02:30 does not exist and fires once at 03:00 EDT', async () => {
    clock.set('2026-03-07T05:00:00Z');
    const vm = await makeVm(s, 'ny1', { disks: [1] });
    const def = await define(s, 'ny1', vm.uuid, 'n230', { schedule: '30 2 * * *', tz: 'America/New_York', retention: 5 });
    expect(def.next_run).toBe('2026-03-07T07:30:00.000Z');
    const fired = await walk(def.id, '2026-03-09T09:00:00Z', 15, ['2026-03-08T05:00:00Z', '2026-03-08T09:00:00Z']);
    expect(fired).toEqual([
      { slot: '2026-03-07T07:30:00.000Z', name: 'n230-20260307_073000' },
      { slot: '2026-03-08T07:00:00.000Z', name: 'n230-20260308_070000' },
      { slot: '2026-03-09T06:30:00.000Z', name: 'n230-20260309_063000' },
    ]);
    expect((await autoSnapshots(s, vm.uuid)).map((x) => x.name)).toEqual(fired.map((f) => f.name));
    await pause('ny1', 'n230');
  });

  it('America/New_York, spring forward: an hourly schedule fires once for 02:00 and 03:00', async () => {
    // The night of the change one year on (2027-03-14), ticked every minute.
    clock.set('2027-03-14T04:30:00Z');
    const vm = await makeVm(s, 'ny2', { disks: [1] });
    const def = await define(s, 'ny2', vm.uuid, 'nh', { schedule: '0 * * * *', tz: 'America/New_York', retention: 10 });
    const fired = await walk(def.id, '2027-03-14T08:30:00Z', 1);
    // 00:00 EST, 01:00 EST, (02:00 skipped by the clock) 03:00 EDT, 04:00 EDT.
    expect(fired.map((f) => f.slot)).toEqual(['2027-03-14T05:00:00.000Z', '2027-03-14T06:00:00.000Z', '2027-03-14T07:00:00.000Z', '2027-03-14T08:00:00.000Z']);
    await pause('ny2', 'nh');
  });

  it('Europe/Bratislava, spring forward: 02:30 fires once at 03:00 CEST (01:00Z)', async () => {
    clock.set('2027-03-27T00:00:00Z');
    const vm = await makeVm(s, 'ba1', { disks: [1] });
    const def = await define(s, 'ba1', vm.uuid, 'b230', { schedule: '30 2 * * *', tz: 'Europe/Bratislava', retention: 5 });
    const fired = await walk(def.id, '2027-03-29T03:00:00Z', 15, ['2027-03-28T00:00:00Z', '2027-03-28T03:00:00Z']);
    expect(fired).toEqual([
      { slot: '2027-03-27T01:30:00.000Z', name: 'b230-20270327_013000' },
      { slot: '2027-03-28T01:00:00.000Z', name: 'b230-20270328_010000' },
      { slot: '2027-03-29T00:30:00.000Z', name: 'b230-20270329_003000' },
    ]);
    await pause('ba1', 'b230');
  });

  it('Europe/Bratislava, fall back: 02:30 occurs twice and fires once', async () => {
    clock.set('2027-10-30T00:00:00Z');
    const vm = await makeVm(s, 'ba2', { disks: [1] });
    const def = await define(s, 'ba2', vm.uuid, 'b230', { schedule: '30 2 * * *', tz: 'Europe/Bratislava', retention: 5 });
    const fired = await walk(def.id, '2027-11-01T03:00:00Z', 15, ['2027-10-31T00:00:00Z', '2027-10-31T03:00:00Z']);
    expect(fired.map((f) => f.slot)).toEqual(['2027-10-30T00:30:00.000Z', '2027-10-31T00:30:00.000Z', '2027-11-01T01:30:00.000Z']);
    // Ticked every minute through the repeated hour: the second 02:30 (01:30Z) found nothing due.
    const slots = await s.runtime.ctx.db.selectFrom('snapshot').select('name').where('define_id', '=', def.id).execute();
    expect(slots).toHaveLength(3);
    await pause('ba2', 'b230');
  });

  it('America/New_York, fall back: 01:30 occurs twice and fires once, at its first occurrence', async () => {
    clock.set('2027-11-06T04:00:00Z');
    const vm = await makeVm(s, 'ny3', { disks: [1] });
    const def = await define(s, 'ny3', vm.uuid, 'n130', { schedule: '30 1 * * *', tz: 'America/New_York', retention: 5 });
    const fired = await walk(def.id, '2027-11-08T08:00:00Z', 15, ['2027-11-07T04:00:00Z', '2027-11-07T08:00:00Z']);
    expect(fired).toEqual([
      { slot: '2027-11-06T05:30:00.000Z', name: 'n130-20271106_053000' },
      { slot: '2027-11-07T05:30:00.000Z', name: 'n130-20271107_053000' },
      { slot: '2027-11-08T06:30:00.000Z', name: 'n130-20271108_063000' },
    ]);
    await pause('ny3', 'n130');
  });
});
