import { Migrator, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { Database } from './schema.js';
import * as m0001 from './migrations/0001_initial.js';
import * as m0002 from './migrations/0002_scheduler.js';

/** Every migration, in order. Migrations only go forward. */
const migrations: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_scheduler': m0002,
};

class StaticProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations;
  }
}

export const knownMigrations: readonly string[] = Object.keys(migrations);

/** Brings the schema up to date; throws when the database holds a migration this build does not know. */
export async function migrateToLatest(db: Kysely<Database>, opts: { schema?: string } = {}): Promise<void> {
  // With a schema of its own (PostgreSQL tests, or an operator's choice), the migration
  // bookkeeping tables live in it too; otherwise Kysely finds another schema's lock table.
  const migrator = new Migrator({
    db,
    provider: new StaticProvider(),
    allowUnorderedMigrations: false,
    ...(opts.schema ? { migrationTableSchema: opts.schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    const what = failed ? ` (migration ${failed.migrationName})` : '';
    throw new Error(`database migration failed${what}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
}
