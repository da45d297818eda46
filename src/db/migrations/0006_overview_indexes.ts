import type { Kysely } from 'kysely';

/*
 * Indexes for the web UI's overview (issue 16, src/overview/): lost snapshots counted per VM
 * without reading the others (status, vm_uuid), and each storage's snapshot bytes by creation day
 * read from the index alone (storage_id, created, size).
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.createIndex('snapshot_status_vm').on('snapshot').columns(['status', 'vm_uuid']).execute();
  await db.schema.createIndex('snapshot_storage_created').on('snapshot').columns(['storage_id', 'created', 'size']).execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
