/**
 * What differs between the two databases, in one place (as src/storage/capabilities.ts is for the
 * storage drivers): features call these helpers and never test the dialect themselves.
 *
 * - SQLite runs one write transaction at a time, so row locks (`FOR UPDATE`, `SKIP LOCKED`) are
 *   needless there, and Kysely rejects them; on PostgreSQL transactions interleave and take them.
 * - The two drivers name a unique-constraint violation differently.
 * - SQLite may give freed pages back to the file system (incremental vacuum); PostgreSQL's
 *   autovacuum does that on its own.
 */
import { sql, type Kysely, type SelectQueryBuilder, type Transaction } from 'kysely';
import type { Database } from './schema.js';
import { isPostgres, type DbKind } from './dialect.js';

type Db = Kysely<Database> | Transaction<Database>;

/** Which engine `db` talks to (the health probe reports it). */
export function dialectOf(db: Db): DbKind {
  return isPostgres(db) ? 'postgres' : 'sqlite';
}

/**
 * Whether concurrent transactions can interleave, so that a read-then-write must lock what it
 * read (PostgreSQL); SQLite's write transactions are serial.
 */
export function needsRowLocks(db: Db): boolean {
  return isPostgres(db);
}

/**
 * Locks the rows `query` selects until the transaction ends (`FOR UPDATE`) where that is needed;
 * a no-op on SQLite.
 */
export async function lockRows<DB, TB extends keyof DB, O>(db: Db, query: SelectQueryBuilder<DB, TB, O>): Promise<void> {
  if (!needsRowLocks(db)) return;
  await query.forUpdate().execute();
}

/**
 * For batch work several servers may run at once (housekeeping, the scheduler's due pages): each takes rows no other
 * transaction holds (`FOR UPDATE SKIP LOCKED`) instead of waiting for them; unchanged on SQLite.
 */
export function skipLockedRows<DB, TB extends keyof DB, O>(db: Db, query: SelectQueryBuilder<DB, TB, O>): SelectQueryBuilder<DB, TB, O> {
  return needsRowLocks(db) ? query.forUpdate().skipLocked() : query;
}

/**
 * Reads a batch of rows, works out what to do with them (`plan`, which may read through other
 * connections of `db`), then writes in one transaction, such that servers running the same batch
 * work at once take different rows:
 *
 * - where transactions interleave (PostgreSQL), `read` runs inside the write transaction and is
 *   expected to take its rows with `skipLockedRows`: they stay locked until the commit, and a
 *   second server's read passes over them to the next rows instead of waiting;
 * - on SQLite (one connection, one writer) `read` and `plan` run before the write transaction: a
 *   read through the connection while that transaction is open would wait for the transaction.
 *
 * `write` is skipped when `plan` returns null (nothing to write).
 *
 * @example
 *   const { rows } = await readPlanWrite(db, {
 *     read: (q) => skipLockedRows(q, q.selectFrom('snapshot_define').selectAll().limit(500)).execute(),
 *     plan: async (rows) => (rows.length ? rows : null),
 *     write: (trx, rows) => claim(trx, rows),
 *   });
 */
export async function readPlanWrite<R, P, W>(
  db: Kysely<Database>,
  steps: { read(q: Db): Promise<R>; plan(rows: R): Promise<P | null>; write(trx: Transaction<Database>, plan: P): Promise<W> },
): Promise<{ rows: R; plan: P | null; written: W | null }> {
  if (!needsRowLocks(db)) {
    const rows = await steps.read(db);
    const plan = await steps.plan(rows);
    const written = plan === null ? null : await db.transaction().execute((trx) => steps.write(trx, plan));
    return { rows, plan, written };
  }
  return db.transaction().execute(async (trx) => {
    const rows = await steps.read(trx);
    const plan = await steps.plan(rows);
    const written = plan === null ? null : await steps.write(trx, plan);
    return { rows, plan, written };
  });
}

/** Whether an insert or update failed on a unique constraint or primary key, on either engine. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/**
 * SQLite only, and only when the file was set up with auto_vacuum=INCREMENTAL: gives freed pages
 * back to the file system. Otherwise (esnap's default, auto_vacuum=NONE) freed pages stay in the
 * free list and new rows reuse them, which is what keeps the file from growing; a full VACUUM would
 * rewrite the whole file under the write lock and is left to the operator. A no-op on PostgreSQL.
 */
export async function releaseFreePages(db: Kysely<Database>): Promise<void> {
  if (isPostgres(db)) return;
  const mode = await sql<{ auto_vacuum: number }>`PRAGMA auto_vacuum`.execute(db);
  if (mode.rows[0]?.auto_vacuum === 2) await sql`PRAGMA incremental_vacuum`.execute(db);
}

/**
 * Serialises transactions that use the same `key` (until each ends) where they could interleave:
 * a PostgreSQL advisory lock, scoped to the current schema so that servers on other schemas of one
 * database do not contend; a no-op on SQLite.
 */
export async function lockKeyInTransaction(trx: Transaction<Database>, key: string): Promise<void> {
  if (!needsRowLocks(trx)) return;
  await sql`SELECT pg_advisory_xact_lock(hashtext(current_schema() || ' ' || ${key}))`.execute(trx);
}

/**
 * After rows were inserted with explicit ids: moves PostgreSQL's serial sequence of `table.column`
 * past them, so that later inserts do not collide; SQLite needs nothing.
 */
export async function syncSerial(trx: Transaction<Database>, table: keyof Database & string, column: string): Promise<void> {
  if (!needsRowLocks(trx)) return;
  await sql`SELECT setval(pg_get_serial_sequence(${table}, ${column}), (SELECT max(${sql.ref(column)}) FROM ${sql.table(table)}))`.execute(trx);
}
