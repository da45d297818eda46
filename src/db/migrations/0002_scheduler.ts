import type { Kysely } from 'kysely';

/*
 * The scheduler's tables. `schedule_slot` records every (definition, scheduled instant) the
 * scheduler has acted on; its primary key is what makes a slot fire at most once, enforced by the
 * database, also with several servers on one PostgreSQL. Rows are history only after a few days
 * and are pruned then.
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('schedule_slot')
    .addColumn('define_id', 'integer', (c) => c.notNull())
    .addColumn('slot', 'text', (c) => c.notNull()) // ISO instant of the scheduled time
    .addColumn('source', 'text', (c) => c.notNull()) // cron, catchup
    .addColumn('state', 'text', (c) => c.notNull()) // fired, waiting, skipped, failed
    .addColumn('reason', 'text') // why skipped or failed
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('changed', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('schedule_slot_pk', ['define_id', 'slot'])
    .execute();
  await db.schema.createIndex('schedule_slot_created').on('schedule_slot').column('created').execute();
  // The tick asks for due definitions by time, in (next_run, id) order; without this every tick
  // scans every definition. (SQLite appends the rowid to index entries, which gives that order.)
  await db.schema.createIndex('snapshot_define_next_run').on('snapshot_define').column('next_run').execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
