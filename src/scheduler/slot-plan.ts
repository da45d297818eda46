/**
 * Pure slot arithmetic of the scheduler, with `now` passed in: which slot of a due definition to
 * fire, which were missed, when it runs next, and whether it has gone stale. Cron semantics (time
 * zones, DST) are those of `nextCronRun`.
 */
import { nextCronRun } from '../domain/cron.js';

/** A slot first seen more than this long after its time counts as missed (server down, stalled loop). */
export const MISSED_GRACE_MS = 60_000;
/** Missed slots are counted one by one up to this many; beyond it the latest is found directly. */
const COUNT_CAP = 1000;
const MINUTE_MS = 60_000;
/** The cron search gives up after 401 years; so does the backward search. */
const MAX_WINDOW_MS = 402 * 366 * 86_400_000;

export interface DueDefinition {
  readonly schedule: string;
  readonly tz: string;
  readonly catchup: boolean;
  /** The stored next run, which is due (<= now). */
  readonly nextRun: Date;
}

export type SlotDecision =
  | {
      /** Fire `slot`; `late` when it is a missed slot fired by catch-up. */
      readonly kind: 'fire';
      readonly slot: Date;
      readonly late: boolean;
      /** Earlier due slots that are skipped (only the most recent one fires). */
      readonly missed: number;
      readonly nextRun: Date | null;
    }
  | {
      /** `catchup: false` and the most recent due slot is already late: skip it too. */
      readonly kind: 'skip';
      readonly slot: Date;
      readonly missed: number;
      readonly nextRun: Date | null;
    };

/** The next slot strictly after `after`, or null when the schedule never fires again. */
export function nextSlot(schedule: string, tz: string, after: Date): Date | null {
  try {
    return nextCronRun(schedule, after, tz);
  } catch (err) {
    if (err instanceof RangeError && /never fires|out of range/.test(err.message)) return null;
    throw err;
  }
}

/**
 * What to do with a due definition at `now`: the most recent due slot fires once (Danube's beat
 * catches up one run after downtime); older due slots are missed. With `catchup: false` a slot
 * seen more than MISSED_GRACE_MS late is skipped as well. Throws RangeError for an invalid
 * schedule or zone.
 *
 * @example
 * decideSlot({ schedule: '0 * * * *', tz: 'UTC', catchup: true, nextRun: new Date('2026-01-01T01:00:00Z') },
 *            new Date('2026-01-01T04:30:00Z'))
 * // { kind: 'fire', slot: 04:00Z, late: true, missed: 3, nextRun: 05:00Z }
 */
export function decideSlot(def: DueDefinition, now: Date): SlotDecision {
  let latest = def.nextRun;
  let count = 1;
  for (;;) {
    const n = nextSlot(def.schedule, def.tz, latest);
    if (n === null || n.getTime() > now.getTime()) break;
    if (count >= COUNT_CAP) {
      // Long downtime of a frequent schedule: find the latest slot without walking every one.
      latest = latestSlots(def.schedule, def.tz, now, 1)[0] ?? latest;
      break;
    }
    latest = n;
    count++;
  }
  const nextRun = nextSlot(def.schedule, def.tz, now);
  const late = now.getTime() - latest.getTime() > MISSED_GRACE_MS;
  if (late && !def.catchup) return { kind: 'skip', slot: latest, missed: count - 1, nextRun };
  return { kind: 'fire', slot: latest, late, missed: count - 1, nextRun };
}

/**
 * The `count` most recent slots at or before `now`, oldest first (fewer when the schedule has not
 * fired that often in 400 years). Searches backwards in doubling windows, so a frequent schedule
 * costs a few steps and a yearly one a few dozen.
 */
export function latestSlots(schedule: string, tz: string, now: Date, count: number): Date[] {
  const end = now.getTime();
  for (let w = 2 * MINUTE_MS; ; w *= 2) {
    const found: Date[] = [];
    let s = nextSlot(schedule, tz, new Date(end - w));
    while (s !== null && s.getTime() <= end) {
      found.push(s);
      s = nextSlot(schedule, tz, s);
    }
    if (found.length >= count || w >= MAX_WINDOW_MS) return found.slice(-count);
  }
}

export interface StaleInput {
  readonly active: boolean;
  readonly schedule: string;
  readonly tz: string;
  /** ISO instants. */
  readonly lastSuccess: string | null;
  readonly created: string;
}

/**
 * A definition is stale when no automatic snapshot succeeded within two periods: the two most
 * recent slots both passed since its last success (or its creation, if it never succeeded).
 * Paused definitions and schedules that never fire are not stale.
 */
export function isStale(def: StaleInput, now: Date, slots = latestSlots(def.schedule, def.tz, now, 2)): boolean {
  if (!def.active || slots.length < 2) return false;
  const since = Date.parse(def.lastSuccess ?? def.created);
  return Number.isFinite(since) && since < slots[0]!.getTime();
}
