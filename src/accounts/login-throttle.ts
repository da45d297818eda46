/**
 * Throttling of failed logins (esnap's decision replacing Danube's per-user request throttle,
 * spec 3.3): after LIMIT failures for one username or one client address within WINDOW, further
 * failed attempts for that username/address answer 429 until the oldest of those failures leaves
 * the window. Nothing else is rate-limited.
 *
 * Invariants:
 * - a valid credential is never throttled: the caller checks the password first and only asks
 *   `retryAfter` for a wrong one (so a legitimate user cannot be locked out by someone else);
 * - only evaluated failures are recorded: a throttled attempt is not, so the throttle ends 15
 *   minutes after the failures that caused it, as `Retry-After` promised;
 * - failures live in the database (table `login_failure`), so every server process sees them.
 *
 * The policy (`retryAfterSeconds`) is pure; the two database helpers around it are thin.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

export const LOGIN_FAILURE_LIMIT = 10;
export const LOGIN_FAILURE_WINDOW_MS = 15 * 60 * 1000;

/** The throttle keys of one attempt: the username as typed and the client address. */
export function throttleKeys(username: string, address: string): string[] {
  return [`user:${username}`, `addr:${address}`];
}

/**
 * Seconds until a key with these failure times (ISO strings, any order) drops below the limit,
 * or 0 when it is not throttled at `now`. Times outside the window are ignored.
 *
 * @example
 * // ten failures at t0, asked 60 s later: throttled for the remaining 840 s
 * retryAfterSeconds(Array(10).fill(t0.toISOString()), new Date(t0.getTime() + 60_000)) === 840
 */
export function retryAfterSeconds(
  failureTimes: readonly string[],
  now: Date,
  limit = LOGIN_FAILURE_LIMIT,
  windowMs = LOGIN_FAILURE_WINDOW_MS,
): number {
  const cutoff = now.getTime() - windowMs;
  const recent = failureTimes
    .map((t) => Date.parse(t))
    .filter((t) => Number.isFinite(t) && t > cutoff)
    .sort((a, b) => b - a);
  if (recent.length < limit) return 0;
  // The limit-th newest failure is the one whose expiry brings the count below the limit.
  const freedAt = recent[limit - 1]! + windowMs;
  return Math.max(1, Math.ceil((freedAt - now.getTime()) / 1000));
}

/** Seconds the attempt must wait (the longest over its keys), or 0 when it may be evaluated. */
export async function loginRetryAfter(db: Kysely<Database>, keys: readonly string[], now: Date): Promise<number> {
  const cutoff = new Date(now.getTime() - LOGIN_FAILURE_WINDOW_MS).toISOString();
  const rows = await db
    .selectFrom('login_failure')
    .select(['key', 'time'])
    .where('key', 'in', [...keys])
    .where('time', '>', cutoff)
    .execute();
  let wait = 0;
  for (const key of keys) {
    const times = rows.filter((r) => r.key === key).map((r) => r.time);
    wait = Math.max(wait, retryAfterSeconds(times, now));
  }
  return wait;
}

/** Records one failed attempt under every key and prunes failures that left the window. */
export async function recordLoginFailure(db: Kysely<Database>, keys: readonly string[], now: Date): Promise<void> {
  const time = now.toISOString();
  const cutoff = new Date(now.getTime() - LOGIN_FAILURE_WINDOW_MS).toISOString();
  await db.transaction().execute(async (trx) => {
    // Pruning on every failure keeps the table at most one window's worth of failures.
    await trx.deleteFrom('login_failure').where('time', '<=', cutoff).execute();
    await trx
      .insertInto('login_failure')
      .values(keys.map((key) => ({ key, time })))
      .execute();
  });
}
