/**
 * Many rows in few statements. On PostgreSQL the rows travel as one JSON parameter that the server
 * unpacks with `json_populate_recordset` into the table's own row type (so every column gets its
 * type without a cast list): one bind value per statement instead of one per cell, which is most of
 * the client and parse cost of a 200-row `VALUES` list. On SQLite (in-process, no round trip) the
 * rows go in ordinary multi-row `VALUES` statements.
 *
 * Every row must have the same keys (the first row's keys name the columns).
 *
 * @example
 *   await insertRows(trx, 'task_log', rows);
 *   const back = await insertRows(trx, 'snapshot', rows, { onConflictDoNothing: ['vm_uuid', 'disk_real_id', 'name'], returning: ['id', 'name'] });
 */
import { sql, type Insertable, type Kysely, type Transaction } from 'kysely';
import type { Database } from './schema.js';
import { dialectOf } from './capabilities.js';

type Db = Kysely<Database> | Transaction<Database>;

/** Rows per statement: PostgreSQL (one JSON value), SQLite (bound cells; its limit is 32,766). */
const PG_CHUNK = 5000;
const SQLITE_CHUNK = 200;

export interface InsertRowsOptions {
  /** ON CONFLICT (columns) DO NOTHING. */
  readonly onConflictDoNothing?: readonly string[];
  /** Columns of the inserted rows to return (rows skipped by the conflict clause are not returned). */
  readonly returning?: readonly string[];
}

export async function insertRows<T extends keyof Database & string>(
  db: Db,
  table: T,
  rows: ReadonlyArray<Insertable<Database[T]>>,
  opts: InsertRowsOptions = {},
): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  if (rows.length === 0) return out;
  if (dialectOf(db) === 'postgres') {
    const cols = Object.keys(rows[0]!);
    const colList = sql.join(cols.map((c) => sql.ref(c)));
    const conflict = opts.onConflictDoNothing ? sql` ON CONFLICT (${sql.join(opts.onConflictDoNothing.map((c) => sql.ref(c)))}) DO NOTHING` : sql``;
    const returning = opts.returning ? sql` RETURNING ${sql.join(opts.returning.map((c) => sql.ref(c)))}` : sql``;
    for (let i = 0; i < rows.length; i += PG_CHUNK) {
      const json = JSON.stringify(rows.slice(i, i + PG_CHUNK));
      const r = await sql<Record<string, unknown>>`INSERT INTO ${sql.table(table)} (${colList}) SELECT ${colList} FROM json_populate_recordset(NULL::${sql.table(table)}, ${json}::json)${conflict}${returning}`.execute(db);
      out.push(...r.rows);
    }
    return out;
  }
  for (let i = 0; i < rows.length; i += SQLITE_CHUNK) {
    // The generic table type defeats Kysely's builder types here; the rows are Insertable<Database[T]>.
    let q: any = (db as Kysely<any>).insertInto(table).values(rows.slice(i, i + SQLITE_CHUNK) as never);
    if (opts.onConflictDoNothing) q = q.onConflict((oc: any) => oc.columns(opts.onConflictDoNothing).doNothing());
    if (opts.returning) out.push(...((await q.returning(opts.returning).execute()) as Array<Record<string, unknown>>));
    else await q.execute();
  }
  return out;
}

/**
 * `column IN (values)` as a where-callback: on PostgreSQL `column = ANY($1::type[])`, one bind value
 * however many values (so callers can take thousands per statement), on SQLite an ordinary IN list.
 *
 * @example
 *   db.selectFrom('vm').selectAll().where(inValues(db, 'uuid', uuids, 'text'))
 */
export function inValues(db: Db, column: string, values: readonly unknown[], pgType: 'integer' | 'text'): (eb: any) => any {
  if (dialectOf(db) === 'postgres') return (eb: any) => eb(column, '=', sql`ANY(${values}::${sql.raw(pgType)}[])`);
  return (eb: any) => eb(column, 'in', values);
}

/** Values per `inValues` statement: PostgreSQL binds one array, SQLite one parameter each. */
export function inChunk(db: Db): number {
  return dialectOf(db) === 'postgres' ? 5000 : 500;
}
