import type { Kysely } from 'kysely';

/*
 * The scheduler's due page (src/scheduler/slot.repository.ts, dueDefinitions) in index order:
 * (next_run, id), so a page after a keyset cursor is an index range instead of a scan and sort of
 * every definition due in the slot (100,000 definitions sharing one next_run: 57 ms per page of 500
 * on PostgreSQL, bench/README.md issue 17).
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.createIndex('snapshot_define_due').on('snapshot_define').columns(['next_run', 'id']).execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
