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

  /**
   * One definition on a new one-disk VM across a change: defined at `start`, ticked to `to`, then
   * paused. It fires exactly `slots` (with `names` where given), each once, starting at its first
   * next_run, and leaves one automatic snapshot per slot. In date order: the clock never goes back.
   */
  interface Crossing {
    title: string;
    start: string;
    vm: string;
    name: string;
    define: { schedule: string; tz: string; retention: number };
    to: string;
    stepMin: number;
    dense?: [string, string];
    slots: string[];
    names?: string[];
  }

  const crossings: Crossing[] = [
    {
      title: 'America/New_York, spring forward: 02:30 does not exist and fires once at 03:00 EDT',
      start: '2026-03-07T05:00:00Z', vm: 'ny1', name: 'n230', define: { schedule: '30 2 * * *', tz: 'America/New_York', retention: 5 },
      to: '2026-03-09T09:00:00Z', stepMin: 15, dense: ['2026-03-08T05:00:00Z', '2026-03-08T09:00:00Z'],
      slots: ['2026-03-07T07:30:00.000Z', '2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z'],
      names: ['n230-20260307_073000', 'n230-20260308_070000', 'n230-20260309_063000'],
    },
    {
      // The night of the change one year on (2027-03-14), ticked every minute:
      // 00:00 EST, 01:00 EST, (02:00 skipped by the clock) 03:00 EDT, 04:00 EDT.
      title: 'America/New_York, spring forward: an hourly schedule fires once for 02:00 and 03:00',
      start: '2027-03-14T04:30:00Z', vm: 'ny2', name: 'nh', define: { schedule: '0 * * * *', tz: 'America/New_York', retention: 10 },
      to: '2027-03-14T08:30:00Z', stepMin: 1,
      slots: ['2027-03-14T05:00:00.000Z', '2027-03-14T06:00:00.000Z', '2027-03-14T07:00:00.000Z', '2027-03-14T08:00:00.000Z'],
    },
    {
      title: 'Europe/Bratislava, spring forward: 02:30 fires once at 03:00 CEST (01:00Z)',
      start: '2027-03-27T00:00:00Z', vm: 'ba1', name: 'b230', define: { schedule: '30 2 * * *', tz: 'Europe/Bratislava', retention: 5 },
      to: '2027-03-29T03:00:00Z', stepMin: 15, dense: ['2027-03-28T00:00:00Z', '2027-03-28T03:00:00Z'],
      slots: ['2027-03-27T01:30:00.000Z', '2027-03-28T01:00:00.000Z', '2027-03-29T00:30:00.000Z'],
      names: ['b230-20270327_013000', 'b230-20270328_010000', 'b230-20270329_003000'],
    },
    {
      // Ticked every minute through the repeated hour: the second 02:30 (01:30Z) finds nothing due.
      title: 'Europe/Bratislava, fall back: 02:30 occurs twice and fires once',
      start: '2027-10-30T00:00:00Z', vm: 'ba2', name: 'b230', define: { schedule: '30 2 * * *', tz: 'Europe/Bratislava', retention: 5 },
      to: '2027-11-01T03:00:00Z', stepMin: 15, dense: ['2027-10-31T00:00:00Z', '2027-10-31T03:00:00Z'],
      slots: ['2027-10-30T00:30:00.000Z', '2027-10-31T00:30:00.000Z', '2027-11-01T01:30:00.000Z'],
    },
    {
      title: 'America/New_York, fall back: 01:30 occurs twice and fires once, at its first occurrence',
      start: '2027-11-06T04:00:00Z', vm: 'ny3', name: 'n130', define: { schedule: '30 1 * * *', tz: 'America/New_York', retention: 5 },
      to: '2027-11-08T08:00:00Z', stepMin: 15, dense: ['2027-11-07T04:00:00Z', '2027-11-07T08:00:00Z'],
      slots: ['2027-11-06T05:30:00.000Z', '2027-11-07T05:30:00.000Z', '2027-11-08T06:30:00.000Z'],
      names: ['n130-20271106_053000', 'n130-20271107_053000', 'n130-20271108_063000'],
    },
  ];

  for (const c of crossings) {
    it(c.title, async () => {
      clock.set(c.start);
      const vm = await makeVm(s, c.vm, { disks: [1] });
      const def = await define(s, c.vm, vm.uuid, c.name, c.define);
      expect(def.next_run).toBe(c.slots[0]);
      const fired = await walk(def.id, c.to, c.stepMin, c.dense);
      expect(fired.map((f) => f.slot)).toEqual(c.slots);
      if (c.names) expect(fired.map((f) => f.name)).toEqual(c.names);
      expect((await autoSnapshots(s, vm.uuid)).map((x) => x.name)).toEqual(fired.map((f) => f.name));
      const rows = await s.runtime.ctx.db.selectFrom('snapshot').select('name').where('define_id', '=', def.id).execute();
      expect(rows).toHaveLength(c.slots.length);
      await pause(c.vm, c.name);
    });
  }
});
