/** The pure slot arithmetic: which slot fires, what was missed, and staleness. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cronSearch } from '../../src/domain/cron.js';
import { MISSED_GRACE_MS, decideSlot, isStale, latestSlots, nextSlot } from '../../src/scheduler/slot-plan.js';

const d = (s: string) => new Date(s);
const iso = (x: Date | null) => x?.toISOString() ?? null;

describe('decideSlot', () => {
  const hourly = { schedule: '0 * * * *', tz: 'UTC', catchup: true };

  it('fires a slot that is due now, on time', () => {
    const r = decideSlot({ ...hourly, nextRun: d('2026-01-01T10:00:00Z') }, d('2026-01-01T10:00:00.200Z'));
    expect(r).toMatchObject({ kind: 'fire', late: false, missed: 0 });
    expect(iso(r.slot)).toBe('2026-01-01T10:00:00.000Z');
    expect(iso(r.nextRun)).toBe('2026-01-01T11:00:00.000Z');
  });

  it('after downtime fires only the most recent missed slot (Danube), counting the older ones', () => {
    const r = decideSlot({ ...hourly, nextRun: d('2026-01-01T01:00:00Z') }, d('2026-01-01T04:30:00Z'));
    expect(r).toMatchObject({ kind: 'fire', late: true, missed: 3 });
    expect(iso(r.slot)).toBe('2026-01-01T04:00:00.000Z');
    expect(iso(r.nextRun)).toBe('2026-01-01T05:00:00.000Z');
  });

  it('with catchup false skips a slot seen later than the grace, but fires one within it', () => {
    const late = decideSlot({ ...hourly, catchup: false, nextRun: d('2026-01-01T01:00:00Z') }, d('2026-01-01T04:30:00Z'));
    expect(late).toMatchObject({ kind: 'skip', missed: 3 });
    const justIn = decideSlot({ ...hourly, catchup: false, nextRun: d('2026-01-01T01:00:00Z') }, new Date(Date.parse('2026-01-01T01:00:00Z') + MISSED_GRACE_MS));
    expect(justIn).toMatchObject({ kind: 'fire', late: false, missed: 0 });
  });

  it('finds the latest slot of a frequent schedule after a long downtime without walking every one', () => {
    const before = cronSearch.steps;
    const r = decideSlot({ schedule: '* * * * *', tz: 'UTC', catchup: true, nextRun: d('2025-01-01T00:00:00Z') }, d('2026-01-01T00:00:30Z'));
    // A year holds 525,600 slots; the walk stops at its cap of 1000 and the latest is found by a backward search.
    expect(cronSearch.steps - before).toBeLessThan(2000);
    expect(iso(r.slot)).toBe('2026-01-01T00:00:00.000Z');
    expect(r.missed).toBe(999); // counted up to the cap
  });

  it('returns no next run for a schedule that will not fire again', () => {
    expect(nextSlot('0 0 31 2 *', 'UTC', d('2026-01-01T00:00:00Z'))).toBeNull();
    expect(() => decideSlot({ schedule: 'bad', tz: 'UTC', catchup: true, nextRun: d('2026-01-01T00:00:00Z') }, d('2026-01-01T00:00:00Z'))).toThrow(RangeError);
  });

  it('always fires a real slot at or before now, and moves the next run past now', () => {
    const schedules = ['*/7 * * * *', '0 */3 * * *', '30 2 * * *', '15 1 * * 0', '0 0 1 * *', '0 9 * * 1-5'];
    const zones = ['UTC', 'Europe/Bratislava', 'America/New_York', 'Asia/Kolkata'];
    fc.assert(
      fc.property(
        fc.constantFrom(...schedules),
        fc.constantFrom(...zones),
        fc.integer({ min: Date.parse('2026-01-01T00:00:00Z'), max: Date.parse('2027-12-31T00:00:00Z') }),
        fc.integer({ min: 0, max: 40 * 86_400_000 }),
        fc.boolean(),
        (schedule, tz, from, wait, catchup) => {
          const nextRun = nextSlot(schedule, tz, new Date(from))!;
          const now = new Date(nextRun.getTime() + wait);
          const r = decideSlot({ schedule, tz, catchup, nextRun }, now);
          expect(r.slot.getTime()).toBeLessThanOrEqual(now.getTime());
          expect(r.slot.getTime()).toBeGreaterThanOrEqual(nextRun.getTime());
          expect(nextSlot(schedule, tz, new Date(r.slot.getTime() - 1))!.getTime()).toBe(r.slot.getTime());
          expect(nextSlot(schedule, tz, r.slot)!.getTime()).toBeGreaterThan(now.getTime());
          expect(r.nextRun!.getTime()).toBeGreaterThan(now.getTime());
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('latestSlots and isStale', () => {
  it('finds the most recent slots backwards, across a DST change', () => {
    expect(latestSlots('30 2 * * *', 'Europe/Bratislava', d('2026-03-29T12:00:00Z'), 2).map(iso)).toEqual(['2026-03-28T01:30:00.000Z', '2026-03-29T01:00:00.000Z']);
    expect(latestSlots('0 0 1 1 *', 'UTC', d('2026-06-01T00:00:00Z'), 2).map(iso)).toEqual(['2025-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z']);
    expect(latestSlots('0 0 31 2 *', 'UTC', d('2026-06-01T00:00:00Z'), 2)).toEqual([]);
  });

  it('is stale when the two most recent slots both passed since the last success', () => {
    const def = { active: true, schedule: '0 * * * *', tz: 'UTC', created: '2026-01-01T00:00:00Z' };
    const now = d('2026-01-01T12:30:00Z');
    expect(isStale({ ...def, lastSuccess: '2026-01-01T11:00:01Z' }, now)).toBe(false);
    expect(isStale({ ...def, lastSuccess: '2026-01-01T10:59:59Z' }, now)).toBe(true);
    expect(isStale({ ...def, lastSuccess: null }, now)).toBe(true);
    expect(isStale({ ...def, lastSuccess: null, created: '2026-01-01T11:10:00Z' }, now)).toBe(false);
    expect(isStale({ ...def, active: false, lastSuccess: null }, now)).toBe(false);
  });
});
