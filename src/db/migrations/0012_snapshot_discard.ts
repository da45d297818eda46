import type { Kysely } from 'kysely';

/*
 * Pending discards: a snapshot that a create which ended FAILURE may have left on storage (its
 * answer said "no snapshot", so nothing of it may stay or be adopted by a sync). One row per
 * (VM, disk path, snapshot id on storage), written in the create's failure completion; every sync
 * of that disk destroys these ids before it lists and deletes the rows in its completion; until
 * then no sync adopts them. Before this
 * table the list lived only in the repair sync's payload and was lost when that sync was cut off
 * too (the chaos run, seed 1 with 10,000 operations: six leftovers adopted by later syncs).
 * `task_id` names the create that failed (for the log); no foreign key, as for every task id.
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('snapshot_discard')
    .addColumn('vm_uuid', 'text', (c) => c.notNull())
    .addColumn('disk_path', 'text', (c) => c.notNull())
    .addColumn('snapshot', 'text', (c) => c.notNull()) // the id on storage, es-<n> or as-<n>
    .addColumn('task_id', 'text', (c) => c.notNull())
    .addColumn('created', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('snapshot_discard_pk', ['vm_uuid', 'disk_path', 'snapshot'])
    .execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
