/**
 * Snapshot-definition schedules: Danube's cron validator (spec 6.2), the predefined defaults
 * (spec 8.2) and the next run of a schedule in a time zone.
 *
 * Semantics are those of Danube's scheduler, Celery beat's `crontab`, except where esnap decided
 * otherwise:
 * - day of month and day of week must BOTH match (Celery's rule, not Vixie cron's "either");
 * - 0 is Sunday; esnap also accepts 7 as Sunday (Celery refuses it at run time);
 * - out-of-range values, reversed ranges (`5-1`, which Celery wraps) and step 0 are refused with
 *   Danube's `Incorrect value in <k>. column.`;
 * - `n/step` (which the validator lets through but Celery cannot run) means `n-max/step`;
 * - a step applies to the last item of a comma list, as Celery splits on commas first.
 */

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

// Python 2's unicode whitespace (str.strip() and str.split() in Danube's validator).
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u180e\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const LEADING_OR_TRAILING_WS = new RegExp(`^[${PY_WS}]|[${PY_WS}]$`);
const WS_RUN = new RegExp(`[${PY_WS}]+`);
// Danube's column syntax (ASCII digits: Python 2 `re` without re.UNICODE).
const COLUMN_RE = /^(\*|[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)(\/[0-9]+)?$/;

interface ColumnRange {
  readonly lo: number;
  /** Highest value `*` and `n/step` expand to. */
  readonly hi: number;
  /** Highest value accepted in a number (7 for the day of week). */
  readonly max: number;
}

const COLUMNS: readonly ColumnRange[] = [
  { lo: 0, hi: 59, max: 59 }, // minute
  { lo: 0, hi: 23, max: 23 }, // hour
  { lo: 1, hi: 31, max: 31 }, // day of month
  { lo: 1, hi: 12, max: 12 }, // month
  { lo: 0, hi: 6, max: 7 }, // day of week, 0 and 7 = Sunday
];

/**
 * Checks a schedule as Danube's `cron_validator` does and returns the first failing message, or
 * null. After Danube's syntax checks, which keep Danube's exact answer for everything Danube
 * refuses, esnap also refuses out-of-range values. The 100-character limit is the field's.
 *
 * @example validateCron('0 3 * * *') === null; validateCron('99 3 * * *') === 'Incorrect value in 1. column.'
 */
export function validateCron(schedule: string): string | null {
  const split = splitColumns(schedule);
  if (typeof split === 'string') return split;
  for (let i = 0; i < 5; i++) {
    if (!COLUMN_RE.test(split[i] as string)) return incorrectColumn(i);
  }
  for (let i = 0; i < 5; i++) {
    if (expandColumn(split[i] as string, COLUMNS[i] as ColumnRange) === null) return incorrectColumn(i);
  }
  return null;
}

/** esnap's refusal of a valid schedule that matches no date (second-wave decisions table). */
export const SCHEDULE_NEVER_FIRES = 'Schedule never fires.';

/**
 * validateCron, then esnap's own check that the schedule fires at all: `0 0 30 2 *` is valid
 * cron, yet a definition with it would show active and never run. Whether a schedule ever fires
 * does not depend on the zone (a local time skipped by DST still fires) nor on the start: the
 * calendar repeats every 400 years, which nextCronRun searches from any instant.
 *
 * @example checkSchedule('0 0 30 2 *') === 'Schedule never fires.'; checkSchedule('0 0 29 2 *') === null
 */
export function checkSchedule(schedule: string): string | null {
  const invalid = validateCron(schedule);
  if (invalid !== null) return invalid;
  try {
    nextCronRun(schedule, new Date(Date.UTC(2000, 0, 1)));
    return null;
  } catch (err) {
    if (err instanceof RangeError) return SCHEDULE_NEVER_FIRES;
    throw err;
  }
}

function incorrectColumn(index: number): string {
  return `Incorrect value in ${index + 1}. column.`;
}

function splitColumns(schedule: string): string[] | string {
  if (LEADING_OR_TRAILING_WS.test(schedule)) return 'Leading nor trailing spaces are allowed.';
  // Python: value.split() != value.split(' '); '' splits into [] and [''].
  const columns = schedule === '' ? [] : schedule.split(WS_RUN);
  const bySpace = schedule.split(' ');
  if (columns.length !== bySpace.length || columns.some((c, i) => c !== bySpace[i])) {
    return 'Use only a single space as a column separator.';
  }
  if (columns.length !== 5) return 'Entry has to consist of exactly 5 columns.';
  return columns;
}

/** The values of one column (7 folded into 0 for the day of week), or null when out of range. */
function expandColumn(column: string, range: ColumnRange): number[] | null {
  const slash = column.indexOf('/');
  const list = slash < 0 ? column : column.slice(0, slash);
  const step = slash < 0 ? 1 : Number(column.slice(slash + 1));
  if (!(step >= 1)) return null;

  const values = new Set<number>();
  const add = (from: number, to: number, by: number): void => {
    for (let v = from; v <= to; v += by) values.add(range.max === 7 && v === 7 ? 0 : v);
  };
  if (list === '*') {
    add(range.lo, range.hi, step);
  } else {
    const items = list.split(',');
    for (let i = 0; i < items.length; i++) {
      const last = i === items.length - 1;
      const [a, b] = (items[i] as string).split('-');
      const from = Number(a);
      const to = b !== undefined ? Number(b) : last && slash >= 0 ? range.hi : from;
      if (!(from >= range.lo && from <= range.max && to >= range.lo && to <= range.max && from <= to)) return null;
      add(from, to, last ? step : 1);
    }
  }
  return [...values].sort((x, y) => x - y);
}

/**
 * The default schedule and retention of the predefined definition names (spec 8.2), or null for
 * any other name. `random(n)` returns an integer in [0, n), e.g. `(n) => crypto.randomInt(n)`.
 * Values are drawn in Danube's order: minute, hour, then day of week or day of month.
 */
export function cronDefaults(
  name: string,
  random: (maxExclusive: number) => number,
): { schedule: string; retention: number } | null {
  const pick = (n: number): number => {
    const v = random(n);
    if (!Number.isInteger(v) || v < 0 || v >= n) throw new RangeError(`random(${n}) returned ${v}`);
    return v;
  };
  switch (name) {
    case 'hourly':
      return { schedule: `${pick(60)} * * * *`, retention: 24 };
    case 'daily': {
      const m = pick(60);
      return { schedule: `${m} ${pick(24)} * * *`, retention: 30 };
    }
    case 'weekly': {
      const m = pick(60);
      const h = pick(24);
      return { schedule: `${m} ${h} * * ${pick(7)}`, retention: 12 };
    }
    case 'monthly': {
      const m = pick(60);
      const h = pick(24);
      return { schedule: `${m} ${h} ${1 + pick(28)} * *`, retention: 6 };
    }
    default:
      return null;
  }
}

/** Whether `tz` is an IANA time zone name this runtime knows (`UTC`, `Europe/Bratislava`). */
export function isValidTimeZone(tz: string): boolean {
  // Node 22+ also accepts offsets such as "+01:00", which are not zone names.
  if (typeof tz !== 'string' || !/^[A-Za-z]/.test(tz)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

interface CronSpec {
  /** next[x] = smallest allowed value >= x, or -1; one table per column, indexed by value. */
  readonly minute: Int8Array;
  readonly hour: Int8Array;
  readonly dom: Int8Array;
  readonly month: Int8Array;
  /** Allowed days of week, 0 = Sunday. */
  readonly dow: readonly boolean[];
}

function parseCron(schedule: string): CronSpec {
  const error = validateCron(schedule);
  if (error !== null) throw new RangeError(`Invalid cron schedule "${schedule}": ${error}`);
  const columns = splitColumns(schedule) as string[];
  const values = columns.map((c, i) => expandColumn(c, COLUMNS[i] as ColumnRange) as number[]);
  const dow = Array.from({ length: 7 }, (_, d) => (values[4] as number[]).includes(d));
  return {
    minute: nextTable(values[0] as number[], 59),
    hour: nextTable(values[1] as number[], 23),
    dom: nextTable(values[2] as number[], 31),
    month: nextTable(values[3] as number[], 12),
    dow,
  };
}

function nextTable(values: number[], max: number): Int8Array {
  const table = new Int8Array(max + 2).fill(-1);
  for (let x = max, next = -1; x >= 0; x--) {
    if (values.includes(x)) next = x;
    table[x] = next;
  }
  return table;
}

/**
 * Candidate steps taken by `nextCronRun` in this process: the tests bound the search's work with
 * it (an operation count holds on a loaded machine; a time limit does not). Nothing else reads it.
 */
export const cronSearch = { steps: 0 };

/**
 * The first instant strictly after `after` at which `schedule` fires, reading the schedule in the
 * IANA zone `tz` (default UTC, Danube's only zone). Around a DST change:
 * - a local time skipped by the clock fires once, at the first instant after the gap (the change
 *   itself): `30 2 * * *` in Europe/Bratislava on 2026-03-29 fires at 03:00 CEST (01:00Z);
 * - a local time the clock shows twice fires once, at its first occurrence.
 * Throws RangeError for an invalid schedule or zone, and for a schedule that never fires
 * (`0 0 31 2 *`): day patterns repeat every 400 years, so none found within 401 means none ever.
 *
 * @example nextCronRun('0 3 * * *', new Date('2026-01-01T03:00:00Z')) // 2026-01-02T03:00:00Z
 */
export function nextCronRun(schedule: string, after: Date, tz = 'UTC'): Date {
  const spec = parseCron(schedule);
  const offsetOf = zoneOffset(tz);
  const a = after.getTime();
  if (!Number.isFinite(a)) throw new RangeError('Invalid date');

  // Candidate local ("wall") times are searched in order, as UTC-based millisecond values. The
  // map from a wall time to the instant it fires at never decreases, so the first candidate that
  // maps after `a` is the answer; wall times up to `a`'s own minute map to `a` or earlier.
  let w = Math.floor((a + offsetOf(a)) / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
  const lastYear = new Date(w).getUTCFullYear() + 401;

  for (;;) {
    cronSearch.steps++;
    if (!Number.isFinite(w)) throw new RangeError('Date out of range');
    const d = new Date(w);
    const y = d.getUTCFullYear();
    const mo = d.getUTCMonth(); // 0-based
    const day = d.getUTCDate();
    const h = d.getUTCHours();
    const mi = d.getUTCMinutes();
    if (y > lastYear) throw new RangeError(`Cron schedule "${schedule}" never fires`);

    if (spec.month[mo + 1] !== mo + 1) {
      w = wallMs(y, mo + 1, 1, 0, 0);
      continue;
    }
    const dd = matchingDay(spec, y, mo, day);
    if (dd < 0) {
      w = wallMs(y, mo + 1, 1, 0, 0);
      continue;
    }
    if (dd !== day) {
      w = wallMs(y, mo, dd, 0, 0);
      continue;
    }
    const hh = spec.hour[h] as number;
    if (hh < 0) {
      w = wallMs(y, mo, day + 1, 0, 0);
      continue;
    }
    if (hh !== h) {
      w = wallMs(y, mo, day, hh, 0);
      continue;
    }
    const mm = spec.minute[mi] as number;
    if (mm < 0) {
      w = wallMs(y, mo, day, h + 1, 0);
      continue;
    }
    const wall = wallMs(y, mo, day, h, mm);
    const t = wallToInstant(wall, offsetOf);
    if (t > a) return new Date(t);
    w = wall + MINUTE_MS; // a second occurrence after a fall-back: already fired
  }
}

/** First day >= `day` of the month matching both day of month and day of week, or -1. */
function matchingDay(spec: CronSpec, y: number, mo: number, day: number): number {
  const daysInMonth = new Date(wallMs(y, mo + 1, 0, 0, 0)).getUTCDate();
  let weekday = new Date(wallMs(y, mo, day, 0, 0)).getUTCDay();
  for (let d = day; d <= daysInMonth; d++, weekday = (weekday + 1) % 7) {
    if (spec.dom[d] === d && spec.dow[weekday] === true) return d;
  }
  return -1;
}

/** Date.UTC without its 0-99 → 1900-1999 year mapping; fields may overflow (day 32 → next month). */
function wallMs(y: number, mo: number, day: number, h: number, mi: number): number {
  const ms = Date.UTC(y, mo, day, h, mi);
  if (y >= 0 && y <= 99) {
    const d = new Date(ms);
    d.setUTCFullYear(d.getUTCFullYear() - 1900);
    return d.getTime();
  }
  return ms;
}

/**
 * The instant a wall time fires at: its only occurrence, its first one when the clock shows it
 * twice, or the end of the gap when the clock skips it. Assumes at most one offset change within
 * the ±14 h around it, true of every real zone.
 */
function wallToInstant(wall: number, offsetOf: (t: number) => number): number {
  // Offsets lie within [-12 h, +14 h], so every instant showing `wall` lies in [lo, hi].
  const lo = wall - 15 * HOUR_MS;
  const hi = wall + 13 * HOUR_MS;
  const offsets = new Set([offsetOf(lo), offsetOf(wall), offsetOf(hi)]);
  let best = Infinity;
  for (const o of offsets) {
    const t = wall - o;
    if (offsetOf(t) === o && t < best) best = t;
  }
  if (best !== Infinity) return best;

  // Skipped: find the first instant whose wall time is past `wall` (offsets are whole seconds).
  let below = lo / 1000;
  let above = hi / 1000;
  while (above - below > 1) {
    const mid = Math.floor((below + above) / 2);
    if (mid * 1000 + offsetOf(mid * 1000) > wall) above = mid;
    else below = mid;
  }
  return above * 1000;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const OFFSET_RE = /GMT(?:([+-])(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?)?$/;

/** A function giving the zone's UTC offset in ms at an instant (whole seconds, e.g. LMT +0:57:44). */
function zoneOffset(tz: string): (t: number) => number {
  if (tz === 'UTC') return () => 0;
  let format = formatters.get(tz);
  if (format === undefined) {
    if (!isValidTimeZone(tz)) throw new RangeError(`Invalid time zone "${tz}"`);
    format = new Intl.DateTimeFormat('en-US', { timeZone: tz, timeZoneName: 'longOffset' });
    formatters.set(tz, format);
  }
  const f = format;
  return (t: number): number => {
    const m = OFFSET_RE.exec(f.format(t));
    if (m === null) throw new RangeError(`Cannot read the offset of "${tz}"`);
    if (m[1] === undefined) return 0;
    const ms = ((Number(m[2]) * 60 + Number(m[3] ?? 0)) * 60 + Number(m[4] ?? 0)) * 1000;
    return m[1] === '-' ? -ms : ms;
  };
}
