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
 * - failures live in the database (table `login_failure`), so every server process sees them;
 * - the check and the record are one transaction holding a lock per key, so parallel failures are
 *   evaluated one after another: exactly LIMIT of them get through, never one more.
 *
 * The policy (`retryAfterSeconds`) is pure; the two database helpers around it are thin.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import { lockKeyInTransaction } from '../db/capabilities.js';

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

/**
 * Checks a failed attempt against the throttle and, when it may be evaluated, records it; returns
 * the seconds to wait (nothing recorded) or 0 (recorded). Atomic per key: on PostgreSQL a
 * transaction-scoped advisory lock per key (taken in sorted order, so two attempts sharing keys
 * cannot deadlock) makes concurrent attempts on a key wait for each other's count and insert;
 * SQLite transactions are serial already. Without it, read-committed transactions all counted 9
 * and all inserted (issue 12: 11 or 12 evaluations for a limit of 10).
 *
 * @example
 * const wait = await checkAndRecordLoginFailure(db, throttleKeys('bob', '192.0.2.1'), new Date());
 * if (wait > 0) throw throttled(wait);
 */
export async function checkAndRecordLoginFailure(db: Kysely<Database>, keys: readonly string[], now: Date): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await lockKeys(trx, keys);
    const wait = await loginRetryAfter(trx, keys, now);
    if (wait === 0) await recordLoginFailure(trx, keys, now);
    return wait;
  });
}

async function lockKeys(trx: Transaction<Database>, keys: readonly string[]): Promise<void> {
  for (const key of [...new Set(keys)].sort()) await lockKeyInTransaction(trx, `login_failure ${key}`);
}

/** Seconds the attempt must wait (the longest over its keys), or 0 when it may be evaluated. */
async function loginRetryAfter(db: Kysely<Database>, keys: readonly string[], now: Date): Promise<number> {
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
async function recordLoginFailure(trx: Transaction<Database>, keys: readonly string[], now: Date): Promise<void> {
  const time = now.toISOString();
  const cutoff = new Date(now.getTime() - LOGIN_FAILURE_WINDOW_MS).toISOString();
  // Pruning on every failure keeps the table at most one window's worth of failures.
  await trx.deleteFrom('login_failure').where('time', '<=', cutoff).execute();
  await trx
    .insertInto('login_failure')
    .values(keys.map((key) => ({ key, time })))
    .execute();
}
