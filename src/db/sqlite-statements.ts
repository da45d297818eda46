/**
 * A prepared-statement cache for better-sqlite3 under Kysely. Kysely's SQLite driver calls
 * `prepare` on every execution (sqlite3_prepare each time: ~6 % of a list request's CPU); this
 * wrapper hands it the statement prepared the first time the same SQL text was seen. SQLite
 * re-prepares a cached statement by itself after a schema change. Kysely serialises every use of
 * the single connection (its connection mutex), so one statement is never used twice at once.
 */
import type { Database as SqliteDb, Statement } from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/**
 * SQL text starting with this comment is prepared in better-sqlite3's pluck mode: each row comes
 * back as its first column's value, not as an object (no object per row for a one-column answer).
 */
export const PLUCK = '/* pluck */ ';

/** Distinct SQL texts kept; the least recently used goes first (IN lists of varying length make many). */
const MAX_STATEMENTS = 500;

export class CachedStatements implements SqliteDatabase {
  readonly #db: SqliteDb;
  readonly #cache = new Map<string, Statement>();

  constructor(db: SqliteDb) {
    this.#db = db;
  }

  prepare(sql: string): SqliteStatement {
    let stmt = this.#cache.get(sql);
    if (stmt) {
      // Most recently used last, so the first key is the one to drop.
      this.#cache.delete(sql);
    } else {
      stmt = this.#db.prepare(sql);
      if (sql.startsWith(PLUCK)) stmt.pluck(true);
      if (this.#cache.size >= MAX_STATEMENTS) this.#cache.delete(this.#cache.keys().next().value!);
    }
    this.#cache.set(sql, stmt);
    return stmt as unknown as SqliteStatement;
  }

  close(): void {
    this.#cache.clear();
    this.#db.close();
  }
}
