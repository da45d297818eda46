import type { Kysely } from 'kysely';

/*
 * A disk whose image was found missing or cut off (a crash in the middle of a rollback on an older
 * esnap, or a change behind esnap's back) is flagged: `vm_disk.damaged` holds why, null when the
 * image is whole. New snapshots of a flagged disk are refused (417 `Disk image is damaged`) until
 * a rollback or restore into it succeeds or a sync finds the image whole (src/vms/disk.damage.ts).
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.alterTable('vm_disk').addColumn('damaged', 'text').execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
