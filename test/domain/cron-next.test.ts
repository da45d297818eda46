import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cronSearch, nextCronRun } from '../../src/domain/cron.js';

const BA = 'Europe/Bratislava';
const NY = 'America/New_York';
const z = (iso: string): Date => new Date(iso);
const next = (s: string, after: string, tz?: string): string => nextCronRun(s, z(after), tz).toISOString();
/** The search steps `f` takes (cronSearch): how much work, whatever the machine's load. */
const stepsOf = (f: () => void): number => {
  const before = cronSearch.steps;
  f();
  return cronSearch.steps - before;
};

describe('nextCronRun in UTC', () => {
  it('returns the next matching minute strictly after the given instant', () => {
    expect(next('0 3 * * *', '2026-01-01T02:59:59.999Z')).toBe('2026-01-01T03:00:00.000Z');
    expect(next('0 3 * * *', '2026-01-01T03:00:00.000Z')).toBe('2026-01-02T03:00:00.000Z');
    expect(next('0 3 * * *', '2026-01-01T03:00:00.001Z')).toBe('2026-01-02T03:00:00.000Z');
    expect(next('* * * * *', '2026-01-01T00:00:30Z')).toBe('2026-01-01T00:01:00.000Z');
    expect(next('59 23 31 12 *', '2026-12-31T23:59:00Z')).toBe('2027-12-31T23:59:00.000Z');
  });

  it('uses UTC by default', () => {
    expect(nextCronRun('30 2 * * *', z('2026-03-28T12:00:00Z')).toISOString()).toBe('2026-03-29T02:30:00.000Z');
  });

  it('expands steps, ranges and lists', () => {
    expect(next('*/20 * * * *', '2026-01-01T00:41:00Z')).toBe('2026-01-01T01:00:00.000Z');
    expect(next('10-30/10 * * * *', '2026-01-01T00:21:00Z')).toBe('2026-01-01T00:30:00.000Z');
    expect(next('10-30/10 * * * *', '2026-01-01T00:31:00Z')).toBe('2026-01-01T01:10:00.000Z');
    expect(next('5/20 * * * *', '2026-01-01T00:26:00Z')).toBe('2026-01-01T00:45:00.000Z');
    expect(next('1,10-20/5 * * * *', '2026-01-01T00:16:00Z')).toBe('2026-01-01T00:20:00.000Z');
    expect(next('1,10-20/5 * * * *', '2026-01-01T00:20:00Z')).toBe('2026-01-01T01:01:00.000Z');
    expect(next('0 0 */10 * *', '2026-01-01T00:00:00Z')).toBe('2026-01-11T00:00:00.000Z');
    expect(next('0 0 1 */5 *', '2026-01-01T00:00:00Z')).toBe('2026-06-01T00:00:00.000Z');
  });

  it('takes 0 and 7 as Sunday', () => {
    // 2026-01-01 is a Thursday.
    expect(next('0 12 * * 7', '2026-01-01T00:00:00Z')).toBe('2026-01-04T12:00:00.000Z');
    expect(next('0 12 * * 0', '2026-01-01T00:00:00Z')).toBe('2026-01-04T12:00:00.000Z');
    expect(next('0 12 * * 5-7', '2026-01-02T13:00:00Z')).toBe('2026-01-03T12:00:00.000Z');
    expect(next('0 12 * * */2', '2026-01-01T00:00:00Z')).toBe('2026-01-01T12:00:00.000Z');
  });

  it('needs both day of month and day of week when both are restricted (Celery)', () => {
    // Friday the 13th: 2026-02-13, then 2026-03-13.
    expect(next('0 0 13 * 5', '2026-01-01T00:00:00Z')).toBe('2026-02-13T00:00:00.000Z');
    expect(next('0 0 13 * 5', '2026-02-13T00:00:00Z')).toBe('2026-03-13T00:00:00.000Z');
  });

  it('skips by field to distant dates: a few steps per month passed, not one per minute', () => {
    // 18 years to 2044 are ~9.5 million minutes and 216 months.
    const steps = stepsOf(() => {
      expect(next('0 0 29 2 *', '2026-03-01T00:00:00Z')).toBe('2028-02-29T00:00:00.000Z');
      expect(next('0 0 29 2 1', '2026-03-01T00:00:00Z')).toBe('2044-02-29T00:00:00.000Z');
      expect(next('0 0 29 2 *', '2096-03-01T00:00:00Z')).toBe('2104-02-29T00:00:00.000Z'); // 2100 is no leap year
    });
    expect(steps).toBeLessThan(1000);
  });

  it('throws for a schedule that never fires, after one step per month of its 401-year search', () => {
    for (const [schedule, tz] of [['0 0 31 2 *', 'UTC'], ['0 0 30 2 *', BA], ['0 0 31 4,6,9,11 *', 'UTC']] as const) {
      const steps = stepsOf(() => expect(() => nextCronRun(schedule, z('2026-01-01T00:00:00Z'), tz)).toThrow(/never fires/));
      expect(steps).toBeLessThan(5000); // 401 years are 4812 months (and 211 million minutes)
    }
  });

  it('throws for an invalid schedule, zone or date', () => {
    expect(() => nextCronRun('99 * * * *', z('2026-01-01T00:00:00Z'))).toThrow(/Incorrect value in 1\. column\./);
    expect(() => nextCronRun('* * * * *', z('2026-01-01T00:00:00Z'), 'Mars/Base')).toThrow(RangeError);
    expect(() => nextCronRun('* * * * *', new Date(Number.NaN))).toThrow(RangeError);
    expect(() => nextCronRun('* * * * *', new Date(8.64e15))).toThrow(RangeError);
  });

  it('handles years before 100', () => {
    const after = new Date(Date.UTC(2000, 0, 1));
    after.setUTCFullYear(50);
    const r = nextCronRun('0 0 1 1 *', after);
    expect(r.getUTCFullYear()).toBe(51);
    expect(r.getUTCMonth()).toBe(0);
    expect(r.getUTCDate()).toBe(1);
  });
});

describe('nextCronRun across DST in Europe/Bratislava (2026-03-29 02:00→03:00, 2026-10-25 03:00→02:00)', () => {
  it('reads the schedule in local time', () => {
    expect(next('30 2 * * *', '2026-01-10T12:00:00Z', BA)).toBe('2026-01-11T01:30:00.000Z'); // CET
    expect(next('30 2 * * *', '2026-07-10T12:00:00Z', BA)).toBe('2026-07-11T00:30:00.000Z'); // CEST
  });

  it('fires a skipped time once, when the gap ends (03:00 CEST = 01:00Z)', () => {
    expect(next('30 2 * * *', '2026-03-28T12:00:00Z', BA)).toBe('2026-03-29T01:00:00.000Z');
    expect(next('30 2 * * *', '2026-03-29T01:00:00Z', BA)).toBe('2026-03-30T00:30:00.000Z');
    // 02:00, 02:30 and 03:00 all fire at the same instant, once.
    expect(next('0,30 2,3 * * *', '2026-03-29T00:00:00Z', BA)).toBe('2026-03-29T01:00:00.000Z');
    expect(next('0,30 2,3 * * *', '2026-03-29T01:00:00Z', BA)).toBe('2026-03-29T01:30:00.000Z');
    expect(next('*/15 * * * *', '2026-03-29T00:45:00Z', BA)).toBe('2026-03-29T01:00:00.000Z');
    expect(next('*/15 * * * *', '2026-03-29T01:00:00Z', BA)).toBe('2026-03-29T01:15:00.000Z');
  });

  it('fires a repeated time once, at its first occurrence (02:30 CEST = 00:30Z)', () => {
    expect(next('30 2 * * *', '2026-10-24T12:00:00Z', BA)).toBe('2026-10-25T00:30:00.000Z');
    expect(next('30 2 * * *', '2026-10-25T00:30:00Z', BA)).toBe('2026-10-26T01:30:00.000Z');
    // From inside the second occurrence the repeated times are over.
    expect(next('30 2 * * *', '2026-10-25T01:10:00Z', BA)).toBe('2026-10-26T01:30:00.000Z');
    expect(next('0 * * * *', '2026-10-25T00:00:00Z', BA)).toBe('2026-10-25T02:00:00.000Z');
    expect(next('*/15 * * * *', '2026-10-25T00:45:00Z', BA)).toBe('2026-10-25T02:00:00.000Z');
    expect(next('*/15 * * * *', '2026-10-25T01:10:00Z', BA)).toBe('2026-10-25T02:00:00.000Z');
    expect(next('0 3 * * *', '2026-10-24T12:00:00Z', BA)).toBe('2026-10-25T02:00:00.000Z');
  });
});

describe('nextCronRun across DST in America/New_York (2026-03-08 02:00→03:00, 2026-11-01 02:00→01:00)', () => {
  it('fires a skipped time once, when the gap ends (03:00 EDT = 07:00Z)', () => {
    expect(next('30 2 * * *', '2026-03-07T12:00:00Z', NY)).toBe('2026-03-08T07:00:00.000Z');
    expect(next('30 2 * * *', '2026-03-08T07:00:00Z', NY)).toBe('2026-03-09T06:30:00.000Z');
    expect(next('0 3 * * *', '2026-03-07T12:00:00Z', NY)).toBe('2026-03-08T07:00:00.000Z');
  });

  it('fires a repeated time once, at its first occurrence (01:30 EDT = 05:30Z)', () => {
    expect(next('30 1 * * *', '2026-10-31T12:00:00Z', NY)).toBe('2026-11-01T05:30:00.000Z');
    expect(next('30 1 * * *', '2026-11-01T05:30:00Z', NY)).toBe('2026-11-02T06:30:00.000Z');
    expect(next('30 2 * * *', '2026-10-31T12:00:00Z', NY)).toBe('2026-11-01T07:30:00.000Z');
  });

  it('takes days of week in local time', () => {
    // Sunday 2026-03-08 00:30 EST is 05:30Z; Saturday 23:30 EST is Sunday 04:30Z.
    expect(next('30 0 * * 0', '2026-03-07T12:00:00Z', NY)).toBe('2026-03-08T05:30:00.000Z');
    expect(next('30 23 * * 6', '2026-03-07T12:00:00Z', NY)).toBe('2026-03-08T04:30:00.000Z');
  });
});

describe('nextCronRun in other zones', () => {
  it('handles half-hour offsets and a skipped calendar day', () => {
    expect(next('0 0 * * *', '2026-01-01T00:00:00Z', 'Asia/Kolkata')).toBe('2026-01-01T18:30:00.000Z');
    // Samoa skipped 2011-12-30 entirely: its midnight fires once the day is over.
    expect(next('0 12 30 12 *', '2011-12-29T00:00:00Z', 'Pacific/Apia')).toBe('2011-12-30T10:00:00.000Z');
  });

  it('takes a few steps per call for a frequent schedule in a DST zone', () => {
    let t = z('2026-01-01T00:00:00Z');
    const steps = stepsOf(() => {
      for (let i = 0; i < 1000; i++) t = nextCronRun('*/7 2,3 * * *', t, BA);
    });
    expect(steps / 1000).toBeLessThan(3);
  });
});

// ---- properties ------------------------------------------------------------------------------

interface Col {
  text: string;
  values: Set<number>;
}

function column(lo: number, hi: number, max: number): fc.Arbitrary<Col> {
  const fold = (v: number): number => (max === 7 && v === 7 ? 0 : v);
  const range = (a: number, b: number, step: number): Set<number> => {
    const s = new Set<number>();
    for (let v = a; v <= b; v += step) s.add(fold(v));
    return s;
  };
  const n = fc.integer({ min: lo, max });
  const step = fc.integer({ min: 1, max: hi - lo + 2 });
  const pair = fc.tuple(n, n).map(([a, b]): [number, number] => (a <= b ? [a, b] : [b, a]));
  return fc.oneof(
    fc.constant({ text: '*', values: range(lo, hi, 1) }),
    step.map((k) => ({ text: `*/${k}`, values: range(lo, hi, k) })),
    n.map((a) => ({ text: `${a}`, values: range(a, a, 1) })),
    pair.map(([a, b]) => ({ text: `${a}-${b}`, values: range(a, b, 1) })),
    fc.tuple(pair, step).map(([[a, b], k]) => ({ text: `${a}-${b}/${k}`, values: range(a, b, k) })),
    fc.tuple(fc.integer({ min: lo, max: hi }), step).map(([a, k]) => ({ text: `${a}/${k}`, values: range(a, hi, k) })),
    fc.array(n, { minLength: 1, maxLength: 3 }).map((xs) => ({ text: xs.join(','), values: new Set(xs.map(fold)) })),
  );
}

const schedule = fc.tuple(column(0, 59, 59), column(0, 23, 23), column(1, 31, 31), column(1, 12, 12), column(0, 6, 7));

function matchesUtc(cols: Col[], t: number): boolean {
  const d = new Date(t);
  const fields = [d.getUTCMinutes(), d.getUTCHours(), d.getUTCDate(), d.getUTCMonth() + 1, d.getUTCDay()];
  return fields.every((v, i) => (cols[i] as Col).values.has(v));
}

/** Naive reference in UTC: day by day, then every hour and minute of a matching day. */
function naiveNextUtc(cols: Col[], after: number): number | null {
  const start = new Date(after);
  const day0 = Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate());
  for (let i = 0; i < 401 * 366; i++) {
    const day = day0 + i * 86_400_000;
    if (!matchesUtc([{ text: '', values: new Set([0]) }, { text: '', values: new Set([0]) }, ...cols.slice(2)], day)) continue;
    for (const h of [...(cols[1] as Col).values].sort((a, b) => a - b)) {
      for (const m of [...(cols[0] as Col).values].sort((a, b) => a - b)) {
        const t = day + h * 3_600_000 + m * 60_000;
        if (t > after) return t;
      }
    }
  }
  return null;
}

describe('nextCronRun properties', () => {
  it('in UTC: later than the start, matching, and the earliest match (reference search)', () => {
    fc.assert(
      fc.property(schedule, fc.date({ min: z('1990-01-01T00:00:00Z'), max: z('2090-01-01T00:00:00Z'), noInvalidDate: true }), (cols, after) => {
        const text = cols.map((c) => c.text).join(' ');
        const expected = naiveNextUtc(cols, after.getTime());
        if (expected === null) {
          expect(() => nextCronRun(text, after)).toThrow(/never fires/);
          return;
        }
        const r = nextCronRun(text, after);
        expect(r.getTime()).toBeGreaterThan(after.getTime());
        expect(matchesUtc(cols, r.getTime())).toBe(true);
        expect(r.getTime()).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  // Reference in a zone: walk real minutes and apply the DST rules literally.
  const partsFormat = new Map<string, Intl.DateTimeFormat>();
  function wallOf(tz: string, t: number): number {
    let f = partsFormat.get(tz);
    if (!f) {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone: tz,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
      partsFormat.set(tz, f);
    }
    const p = Object.fromEntries(f.formatToParts(t).map((x) => [x.type, x.value]));
    return Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
  }

  function bruteForce(cols: Col[], tz: string, after: number): number {
    const off = (t: number): number => wallOf(tz, t) - t;
    for (let u = Math.floor(after / 60_000) * 60_000 + 60_000; ; u += 60_000) {
      const wall = u + off(u);
      const before = off(u - 3 * 3_600_000);
      const secondOccurrence = before > off(u) && off(u - (before - off(u))) === before;
      if (matchesUtc(cols, wall) && !secondOccurrence) return u;
      const prevWall = u - 60_000 + off(u - 60_000);
      for (let w = prevWall + 60_000; w < wall; w += 60_000) if (matchesUtc(cols, w)) return u; // end of a gap
    }
  }

  it('across DST: same answer as a literal minute-by-minute walk', () => {
    const transitions = ['2026-03-29T01:00:00Z', '2026-10-25T01:00:00Z', '2026-03-08T07:00:00Z', '2026-11-01T06:00:00Z'];
    const daily = fc.tuple(column(0, 59, 59), column(0, 23, 23)).map(([m, h]) => [
      m,
      h,
      { text: '*', values: new Set(Array.from({ length: 31 }, (_, i) => i + 1)) },
      { text: '*', values: new Set(Array.from({ length: 12 }, (_, i) => i + 1)) },
      { text: '*', values: new Set([0, 1, 2, 3, 4, 5, 6]) },
    ]);
    fc.assert(
      fc.property(
        daily,
        fc.constantFrom(BA, NY),
        fc.constantFrom(...transitions),
        fc.integer({ min: -26 * 60, max: 4 * 60 }),
        (cols, tz, at, minutes) => {
          const after = z(at).getTime() + minutes * 60_000 + (minutes % 7) * 1000;
          const r = nextCronRun(cols.map((c) => c.text).join(' '), new Date(after), tz).getTime();
          expect(r).toBeGreaterThan(after);
          expect(r).toBe(bruteForce(cols, tz, after));
        },
      ),
      { numRuns: 60 },
    );
  });
});
