import type { Kysely } from 'kysely';

/*
 * Backup definitions get what snapshot definitions have: `catchup` (default 1: after downtime the
 * most recent missed slot still fires once; 0: a late slot is skipped) and a slot history,
 * `backup_slot`, one row per (definition, scheduled instant) the backup scheduler acted on (fired,
 * skipped with the reason, failed with the message), pruned after a few days like schedule_slot.
 * Its primary key refuses a second row for the same slot, as schedule_slot's does.
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.alterTable('backup_define').addColumn('catchup', 'integer', (c) => c.notNull().defaultTo(1)).execute();
  await db.schema
    .createTable('backup_slot')
    .addColumn('define_id', 'integer', (c) => c.notNull())
    .addColumn('slot', 'text', (c) => c.notNull()) // ISO instant of the scheduled time
    .addColumn('source', 'text', (c) => c.notNull()) // cron, catchup
    .addColumn('state', 'text', (c) => c.notNull()) // fired, skipped, failed
    .addColumn('reason', 'text') // why skipped or failed
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('changed', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('backup_slot_pk', ['define_id', 'slot'])
    .execute();
  await db.schema.createIndex('backup_slot_created').on('backup_slot').column('created').execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
