/**
 * Whether a PostgreSQL statement waits on another transaction's lock, without timing: the server's
 * own `pg_blocking_pids`. Shared by the scheduler tests that prove a claim does not wait on another
 * server's row locks (SKIP LOCKED).
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../../src/db/schema.js';

/** Resolves 'done' when `p` settles, or 'blocked' as soon as a backend waits on `holderPid`. */
export async function doneOrBlocked(p: Promise<unknown>, db: Kysely<Database>, holderPid: number): Promise<'done' | 'blocked'> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (;;) {
    if (done) return 'done';
    const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${holderPid}::int = ANY(pg_blocking_pids(pid))`.execute(db);
    if (r.rows[0]!.n > 0) return 'blocked';
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
