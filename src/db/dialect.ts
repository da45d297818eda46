/**
 * Chooses the Kysely dialect once, from the database URL: `sqlite:<path>` (embedded default,
 * better-sqlite3) or `postgres://…` (node-postgres pool).
 */
import { Kysely, PostgresAdapter, PostgresDialect, SqliteDialect, CamelCasePlugin } from 'kysely';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Database } from './schema.js';
import { CachedStatements } from './sqlite-statements.js';
import { NamingPool } from './pg-statements.js';

void CamelCasePlugin;

// node-postgres returns int8 as strings; every bigint esnap stores (sizes) fits in a double.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

export type DbKind = 'sqlite' | 'postgres';

export interface OpenedDb {
  readonly db: Kysely<Database>;
  readonly kind: DbKind;
  readonly url: string;
  /** For PostgreSQL: the schema (search_path) used, when one was given. */
  readonly schema?: string;
}

export function isPostgres(db: Kysely<any>): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

export function dbKindOf(url: string): DbKind {
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return 'postgres';
  if (url.startsWith('sqlite:')) return 'sqlite';
  throw new Error(`ESNAP_DATABASE_URL must start with sqlite: or postgres:// (got ${JSON.stringify(url)})`);
}

/**
 * Opens the database. For PostgreSQL, `searchPath` puts every table in that schema (tests use a
 * schema per test file; production uses the default).
 */
export function openDatabase(url: string, opts: { searchPath?: string; poolSize?: number } = {}): OpenedDb {
  const kind = dbKindOf(url);
  if (kind === 'sqlite') {
    const file = url.slice('sqlite:'.length);
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    const sqlite = new SQLite(file);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    // Fewer, larger checkpoints: a burst of task submissions otherwise pays one every ~1,000 pages.
    sqlite.pragma('wal_autocheckpoint = 10000');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = OFF');
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: new CachedStatements(sqlite) }) });
    return { db, kind, url };
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 10,
    ...(opts.searchPath ? { options: `-c search_path=${opts.searchPath}` } : {}),
  });
  // An idle client that loses its connection must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  // A checked-out client between two queries of a transaction has no pool listener: when the
  // server goes away (a PostgreSQL restart) its 'error' would be uncaught and end the process. The
  // transaction's next query fails instead.
  pool.on('connect', (client) => client.on('error', () => undefined));
  // Texts marked PREPARED go as named statements (pg-statements.ts).
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new NamingPool(pool) }) });
  const schema = opts.searchPath ?? searchPathOf(url);
  return { db, kind, url, ...(schema ? { schema } : {}) };
}

/** The schema named by `?options=-c search_path=<s>` in a PostgreSQL URL, if any. */
function searchPathOf(url: string): string | undefined {
  try {
    const options = new URL(url).searchParams.get('options') ?? '';
    const m = /(?:^|\s)-c\s*search_path=([A-Za-z_][A-Za-z0-9_]*)/.exec(options);
    return m?.[1];
  } catch {
    return undefined;
  }
}
