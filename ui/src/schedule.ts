/**
 * Schedules in words: `30 5 * * *` in Europe/Bratislava reads "every day at 05:30
 * (Europe/Bratislava)". Common shapes get a sentence; anything else is "custom schedule" (the
 * cron is always shown beside the words). A schedule the validator refuses, or one that never
 * fires (`0 0 31 2 *`), is an error. Pure.
 */
import { nextCronRun, validateCron } from '../../src/domain/cron.js';

export interface ScheduleWords {
  readonly text: string;
  /** Set when the schedule cannot run: the text is then the reason. */
  readonly error: boolean;
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const NUM = /^[0-9]+$/;
const LIST = /^[0-9]+(,[0-9]+)*$/;

const pad = (n: number): string => String(n).padStart(2, '0');

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10] ?? 'th';
  return `${n}${s}`;
}

function join(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** Days of week as words: `1-5` weekdays, `0,6` weekends, lists of names. Null when not a plain list/range. */
function weekdays(col: string): string | null {
  if (col === '1-5') return 'every weekday (Monday to Friday)';
  if (col === '0,6' || col === '6,0' || col === '6,7' || col === '6-7') return 'every Saturday and Sunday';
  let days: number[];
  if (/^[0-7]-[0-7]$/.test(col)) {
    const [a, b] = col.split('-').map(Number) as [number, number];
    if (a > b) return null;
    days = Array.from({ length: b - a + 1 }, (_, i) => a + i);
  } else if (LIST.test(col)) days = col.split(',').map(Number);
  else return null;
  const names = [...new Set(days.map((d) => DAYS[d % 7]!))];
  return `every ${join(names)}`;
}

/** The words of a five-column schedule in its zone (the zone is always named). */
export function describeSchedule(schedule: string, tz: string): ScheduleWords {
  const invalid = validateCron(schedule);
  if (invalid) return { text: `invalid schedule: ${invalid}`, error: true };
  try {
    nextCronRun(schedule, new Date(Date.UTC(2000, 0, 1)), tz);
  } catch (err) {
    const msg = (err as Error).message;
    return { text: /time zone|timezone|zone/i.test(msg) ? `invalid time zone: ${tz}` : 'never fires: no date matches this schedule', error: true };
  }
  const [mi, h, dom, mon, dow] = schedule.split(' ') as [string, string, string, string, string];
  const zone = ` (${tz})`;
  const step = (c: string): number | null => (/^\*\/[0-9]+$/.test(c) ? Number(c.slice(2)) : null);
  let when: string | null = null;
  if (dom === '*' && mon === '*' && dow === '*') {
    if (mi === '*' && h === '*') when = 'every minute';
    else if (step(mi) !== null && h === '*') when = step(mi) === 1 ? 'every minute' : `every ${step(mi)} minutes`;
    else if (NUM.test(mi) && h === '*') when = Number(mi) === 0 ? 'every hour, on the hour' : `every hour at minute ${Number(mi)}`;
    else if (NUM.test(mi) && step(h) !== null) when = `every ${step(h)} hours at minute ${Number(mi)}`;
  }
  if (when === null && NUM.test(mi) && LIST.test(h) && mon === '*') {
    const times = join(h.split(',').map((x) => `${pad(Number(x))}:${pad(Number(mi))}`));
    if (dom === '*' && dow === '*') when = `every day at ${times}`;
    else if (dom === '*') {
      const days = weekdays(dow);
      if (days) when = `${days} at ${times}`;
    } else if (LIST.test(dom) && dow === '*') when = `on the ${join(dom.split(',').map((d) => ordinal(Number(d))))} of every month at ${times}`;
  }
  return { text: when === null ? `custom schedule${zone}` : `${when}${zone}`, error: false };
}
