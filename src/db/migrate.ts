/**
 * esnap's migrator: applies the migrations below in order, each once, inside one transaction that
 * holds a lock (PostgreSQL: an advisory lock per schema; SQLite: the write lock), so concurrent
 * servers never migrate twice. Migrations only go forward; a database that holds a migration this
 * build does not know was written by a newer esnap, and start-up refuses it.
 *
 * Kysely's own Migrator is not used: it introspects every schema of a PostgreSQL database to find
 * its tables, and that query fails when another schema is dropped at the same moment.
 */
import { sql, type Kysely, type Migration } from 'kysely';
import type { Database } from './schema.js';
import { isPostgres } from './dialect.js';
import * as m0001 from './migrations/0001_initial.js';
import * as m0002 from './migrations/0002_scheduler.js';
import * as m0003 from './migrations/0003_crash_safety.js';
import * as m0004 from './migrations/0004_backups.js';
import * as m0005 from './migrations/0005_libvirt.js';
import * as m0006 from './migrations/0006_overview_indexes.js';
import * as m0007 from './migrations/0007_ssh_trust.js';
import * as m0008 from './migrations/0008_due_index.js';
import * as m0009 from './migrations/0009_task_define.js';
import * as m0010 from './migrations/0010_backup_slots.js';
import * as m0011 from './migrations/0011_task_open_xid.js';
import * as m0012 from './migrations/0012_snapshot_discard.js';

/** Every migration, in order. */
const migrations: ReadonlyArray<readonly [string, Migration]> = [
  ['0001_initial', m0001],
  ['0002_scheduler', m0002],
  ['0003_crash_safety', m0003],
  ['0004_backups', m0004],
  ['0005_libvirt', m0005],
  ['0006_overview_indexes', m0006],
  ['0007_ssh_trust', m0007],
  ['0008_due_index', m0008],
  ['0009_task_define', m0009],
  ['0010_backup_slots', m0010],
  ['0011_task_open_xid', m0011],
  ['0012_snapshot_discard', m0012],
];

export const knownMigrations: readonly string[] = migrations.map(([name]) => name);

export class NewerSchemaError extends Error {
  override readonly name = 'NewerSchemaError';
}

/**
 * Brings the schema up to date; throws NewerSchemaError when the database is newer than this build.
 * `schema` is accepted for callers that know it; the lock and the tables follow the connection's
 * search_path either way.
 */
export async function migrateToLatest(db: Kysely<Database>, _opts: { schema?: string } = {}): Promise<void> {
  await migrateUpTo(db, knownMigrations.at(-1)!);
}

/**
 * Migrates up to a named migration: applies it and every migration before it that is missing, and
 * nothing after it. A database already past `target` is left as it is (migrations only go forward).
 * The upgrade tests use it to build each migration's previous schema with the real migrations:
 *
 *   await migrateUpTo(db, '0001_initial'); // the schema of the first release
 *   // … rows in the old schema …
 *   await migrateToLatest(db);
 */
export async function migrateUpTo(db: Kysely<Database>, target: string): Promise<void> {
  const last = knownMigrations.indexOf(target);
  if (last < 0) throw new Error(`unknown migration ${JSON.stringify(target)}; this build knows ${knownMigrations.join(', ')}`);
  const anyDb = db as unknown as Kysely<any>;
  await anyDb.transaction().execute(async (trx) => {
    if (isPostgres(trx)) await sql`SELECT pg_advisory_xact_lock(hashtext(current_schema()))`.execute(trx);
    await trx.schema
      .createTable('esnap_migration')
      .ifNotExists()
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('applied', 'text', (c) => c.notNull())
      .execute();
    const applied = new Set(
      (await trx.selectFrom('esnap_migration').select('name').execute()).map((r: { name: string }) => r.name),
    );
    const unknown = [...applied].filter((n) => !knownMigrations.includes(n)).sort();
    if (unknown.length > 0) {
      throw new NewerSchemaError(
        `the database schema is newer than this esnap: the database has migration${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}, this build knows migrations up to ${knownMigrations.at(-1)}; upgrade esnap to the version that wrote the database (or restore a backup taken before that upgrade)`,
      );
    }
    for (const [name, migration] of migrations.slice(0, last + 1)) {
      if (applied.has(name)) continue;
      try {
        await migration.up(trx);
      } catch (err) {
        throw new Error(`database migration ${name} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      await trx.insertInto('esnap_migration').values({ name, applied: new Date().toISOString() }).execute();
    }
  });
}
