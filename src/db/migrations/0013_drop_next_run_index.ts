import type { Kysely } from 'kysely';

/*
 * `snapshot_define_next_run` (0002, on next_run alone) is covered by `snapshot_define_due`
 * (0008, on (next_run, id)): every query that could use the first uses the second. The scheduler's
 * claim moves `next_run` of every definition it fires, so each index on that column costs an entry
 * per claimed definition (the update cannot be HOT): one of the run's index entries that does
 * nothing (bench/README.md, "Scale, fifth session").
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.dropIndex('snapshot_define_next_run').ifExists().execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
