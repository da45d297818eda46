/**
 * When is a definition stale: no successful automatic snapshot within two periods of its
 * schedule. The period is the longest gap between its next runs (so a weekdays-only schedule is
 * not flagged over a weekend). Runs are computed with the server's own cron module (bundled), in
 * the definition's time zone. Pure: `now` is passed in.
 */
import { nextCronRun, validateCron } from '../../src/domain/cron.js';
import type { Definition, Snapshot } from './types.js';

export { validateCron };

/** The next `n` runs after `from`; throws RangeError for an invalid schedule or zone. */
export function nextRuns(schedule: string, tz: string, from: Date, n = 5): Date[] {
  const out: Date[] = [];
  let at = from;
  for (let i = 0; i < n; i++) {
    at = nextCronRun(schedule, at, tz);
    out.push(at);
  }
  return out;
}

export function periodMs(schedule: string, tz: string, now: number): number | null {
  try {
    const runs = nextRuns(schedule, tz, new Date(now), 6);
    let longest = 0;
    for (let i = 1; i < runs.length; i++) longest = Math.max(longest, runs[i]!.getTime() - runs[i - 1]!.getTime());
    return longest > 0 ? longest : null;
  } catch {
    return null;
  }
}

export interface Staleness {
  /** Last successful automatic snapshot of the definition (ISO), if any. */
  readonly lastSuccess: string | null;
  readonly stale: boolean;
  /** Why, in words (shown next to the colour). */
  readonly reason: string;
}

/** Newest OK automatic snapshot of the definition on its disk. */
export function lastSuccessOf(def: Definition, snapshots: readonly Snapshot[]): string | null {
  let best: string | null = null;
  for (const s of snapshots) {
    if (s.define !== def.name || s.type !== 1 || s.status !== 1 || s.disk_id !== def.disk_id) continue;
    if (best === null || s.created > best) best = s.created;
  }
  return best;
}

export function staleness(def: Definition, snapshots: readonly Snapshot[], now: number): Staleness {
  const fromRows = lastSuccessOf(def, snapshots);
  const lastSuccess = [def.last_success ?? null, fromRows].filter((x): x is string => x !== null).sort().pop() ?? null;
  if (!def.active) return { lastSuccess, stale: false, reason: 'paused' };
  const period = periodMs(def.schedule, def.tz ?? 'UTC', now);
  if (period === null) return { lastSuccess, stale: false, reason: 'schedule cannot be evaluated' };
  if (def.next_run && new Date(def.next_run).getTime() < now - period) {
    return { lastSuccess, stale: true, reason: `overdue since ${def.next_run}` };
  }
  if (lastSuccess) {
    const stale = now - new Date(lastSuccess).getTime() > 2 * period;
    return { lastSuccess, stale, reason: stale ? 'no success within two periods' : 'on schedule' };
  }
  if (def.last_error) return { lastSuccess, stale: true, reason: `never succeeded: ${def.last_error}` };
  return { lastSuccess, stale: false, reason: 'no automatic snapshot yet' };
}
