import type { Kysely } from 'kysely';

/*
 * VMs discovered from libvirt (issue 14, src/hypervisor/). `vm.libvirt` marks a VM that mirrors a
 * domain of its node: its identity, status and disks follow libvirt, its socket fields are not
 * writable. A libvirt disk is identified by its target device and source path together
 * (`libvirt_target`, `libvirt_source`); `detached` keeps a disk that left its domain, with its
 * snapshots, until an admin deletes it; `unmapped` says why a disk lies on no esnap storage
 * (storage_id 0 then, never snapshotted).
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.alterTable('vm').addColumn('libvirt', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable('vm_disk').addColumn('libvirt_target', 'text').execute();
  await db.schema.alterTable('vm_disk').addColumn('libvirt_source', 'text').execute();
  await db.schema.alterTable('vm_disk').addColumn('detached', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable('vm_disk').addColumn('unmapped', 'text').execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
