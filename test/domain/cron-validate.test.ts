import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkSchedule, cronDefaults, isValidTimeZone, validateCron } from '../../src/domain/cron.js';

const LEADING = 'Leading nor trailing spaces are allowed.';
const SINGLE = 'Use only a single space as a column separator.';
const FIVE = 'Entry has to consist of exactly 5 columns.';
const col = (k: number): string => `Incorrect value in ${k}. column.`;

describe('validateCron: Danube checks in order (spec 6.2)', () => {
  it.each([
    '* * * * *',
    '0 0 * * *',
    '*/5 * * * *',
    '0-59/15 * * * *',
    '1,2,3 4-5 6 7 0',
    '59 23 31 12 6',
    '0 0 1 1 7',
    '0 0 * * 0-7',
    '0 0 * * 1-7/2',
    '5/10 * * * *',
    '00 01 01 01 00',
    '1,10-20/5 * * * *',
    '0 0 29 2 *',
    '0 0 31 2 *',
  ])('%j is valid', (s) => {
    expect(validateCron(s)).toBeNull();
  });

  it.each([
    [' 0 0 * * *', LEADING],
    ['0 0 * * * ', LEADING],
    ['\t0 0 * * *', LEADING],
    ['0 0 * * *\n', LEADING],
    ['\u00a00 0 * * *', LEADING], // Python's unicode strip() takes no-break spaces
    ['0 0 * * *\u3000', LEADING],
    [' ', LEADING],
    ['', SINGLE], // ''.split() is [] but ''.split(' ') is ['']
    ['0  0 * * *', SINGLE],
    ['0\t0 * * *', SINGLE],
    ['0 0 * *\u00a0*', SINGLE],
    ['0 0 * * \u00a0*', SINGLE],
    ['0 0 * *', FIVE],
    ['0 0 * * * *', FIVE],
    ['*', FIVE],
    ['0 0 * * mon', col(5)],
    ['0 0 * jan *', col(4)],
    ['? 0 * * *', col(1)],
    ['L 0 * * *', col(1)],
    ['0 */ * * *', col(2)],
    ['0 0 1-2-3 * *', col(3)],
    ['*,1 * * * *', col(1)],
    ['1,* * * * *', col(1)],
    ['-1 * * * *', col(1)],
    ['1- * * * *', col(1)],
    [',1 * * * *', col(1)],
    ['1, * * * *', col(1)],
    ['1/2/3 * * * *', col(1)],
    ['*/1/2 * * * *', col(1)],
    ['\uff10 0 * * *', col(1)], // full-width digit
    ['\u0661 0 * * *', col(1)], // Arabic-Indic digit
    ['\u200b0 0 * * *', col(1)], // zero-width space is not whitespace in Python
  ])('%j → %s', (s, m) => {
    expect(validateCron(s)).toBe(m);
  });

  it('keeps the first failing rule', () => {
    expect(validateCron(' 0  0 * *')).toBe(LEADING);
    expect(validateCron('0  0 * *')).toBe(SINGLE);
    expect(validateCron('a b c d')).toBe(FIVE);
    expect(validateCron('0 x y * *')).toBe(col(2));
  });
});

describe('validateCron: esnap range checks', () => {
  it.each([
    ['60 * * * *', 1],
    ['99 99 * * *', 1], // Danube lets this through
    ['0 24 * * *', 2],
    ['0 0 0 * *', 3],
    ['0 0 32 * *', 3],
    ['0 0 1-32 * *', 3],
    ['0 0 * 0 *', 4],
    ['0 0 * 13 *', 4],
    ['0 0 * 1,13 *', 4],
    ['0 0 * * 8', 5],
    ['0 0 * * 6-8', 5],
    ['5-1 * * * *', 1], // reversed ranges are refused (Celery would wrap them)
    ['*/0 * * * *', 1],
    ['1-5/0 * * * *', 1],
    ['99999999999999999999 * * * *', 1],
    ['0 0 * * 7/2', 5],
  ])('%j → column %d', (s, k) => {
    expect(validateCron(s)).toBe(col(k));
  });

  it('reports syntax errors before range errors, as Danube would answer them', () => {
    expect(validateCron('99 mon * * *')).toBe(col(2));
    expect(validateCron('99 1 * * mon')).toBe(col(5));
  });

  it('accepts the edges of every column, and large steps', () => {
    expect(validateCron('0,59 0,23 1,31 1,12 0,6,7')).toBeNull();
    expect(validateCron('*/60 */24 */31 */12 */7')).toBeNull();
    expect(validateCron('*/99999999999999999999 * * * *')).toBeNull();
  });

  it('never throws (property)', () => {
    const cronish = fc
      .array(fc.constantFrom('0', '1', '5', '9', '59', '7', '*', '/', ',', '-', ' ', '  ', '\t', 'x'), { maxLength: 20 })
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), cronish), (s) => {
        const r = validateCron(s);
        expect(r === null || typeof r === 'string').toBe(true);
        if (r !== null) expect(r).toMatch(/^(Leading nor|Use only|Entry has|Incorrect value in [1-5]\. column\.$)/);
      }),
    );
  });
});

describe('cronDefaults (spec 8.2)', () => {
  function source(values: number[]): { random: (n: number) => number; calls: number[] } {
    const calls: number[] = [];
    let i = 0;
    return {
      calls,
      random: (n: number) => {
        calls.push(n);
        return values[i++] ?? 0;
      },
    };
  }

  it('gives the hourly, daily, weekly and monthly defaults', () => {
    const hourly = source([17]);
    expect(cronDefaults('hourly', hourly.random)).toEqual({ schedule: '17 * * * *', retention: 24 });
    expect(hourly.calls).toEqual([60]);
    const daily = source([5, 3]);
    expect(cronDefaults('daily', daily.random)).toEqual({ schedule: '5 3 * * *', retention: 30 });
    expect(daily.calls).toEqual([60, 24]);
    const weekly = source([59, 23, 6]);
    expect(cronDefaults('weekly', weekly.random)).toEqual({ schedule: '59 23 * * 6', retention: 12 });
    expect(weekly.calls).toEqual([60, 24, 7]);
    const monthly = source([0, 0, 27]);
    expect(cronDefaults('monthly', monthly.random)).toEqual({ schedule: '0 0 28 * *', retention: 6 });
    expect(monthly.calls).toEqual([60, 24, 28]);
    expect(cronDefaults('monthly', source([0, 0, 0]).random)?.schedule).toBe('0 0 1 * *');
  });

  it('returns null for any other name', () => {
    for (const name of ['Daily', 'yearly', '', 'hourly ']) expect(cronDefaults(name, () => 0)).toBeNull();
  });

  it('refuses a random source out of its range', () => {
    expect(() => cronDefaults('hourly', () => 60)).toThrow(RangeError);
    expect(() => cronDefaults('daily', () => -1)).toThrow(RangeError);
    expect(() => cronDefaults('weekly', () => 0.5)).toThrow(RangeError);
  });

  it('always gives a valid schedule (property)', () => {
    fc.assert(
      fc.property(fc.constantFrom('hourly', 'daily', 'weekly', 'monthly'), fc.infiniteStream(fc.nat()), (name, stream) => {
        const it = stream[Symbol.iterator]();
        const d = cronDefaults(name, (n) => (it.next().value as number) % n);
        expect(d).not.toBeNull();
        expect(validateCron(d?.schedule ?? '')).toBeNull();
      }),
    );
  });
});

describe('isValidTimeZone', () => {
  it.each(['UTC', 'Europe/Bratislava', 'America/New_York', 'Etc/GMT+5', 'Asia/Kolkata'])('%s is valid', (tz) => {
    expect(isValidTimeZone(tz)).toBe(true);
  });

  it.each(['', 'Mars/Olympus_Mons', '+01:00', '-05:00', '../etc/passwd', 'Europe/Bratislava ', ' UTC'])('%j is invalid', (tz) => {
    expect(isValidTimeZone(tz)).toBe(false);
  });
});

describe('checkSchedule: validateCron, then esnap refuses a schedule that never fires', () => {
  it.each(['0 0 30 2 *', '0 0 31 2 *', '0 0 31 4,6,9,11 *', '0 0 30,31 2 *'])('%j never fires', (s) => {
    expect(validateCron(s)).toBeNull();
    expect(checkSchedule(s)).toBe('Schedule never fires.');
  });

  it.each(['0 0 29 2 *', '0 0 31 1-12/11 *', '0 0 13 * 5', '0 0 29 2 1'])('%j fires', (s) => {
    expect(checkSchedule(s)).toBeNull();
  });

  it('keeps Danube\'s message for what Danube refuses', () => {
    expect(checkSchedule('0 0 30 2')).toBe(FIVE);
    expect(checkSchedule('0 0 32 2 *')).toBe(col(3));
  });
});
