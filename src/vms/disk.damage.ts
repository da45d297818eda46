/**
 * The damaged flag of a disk (`vm_disk.damaged`, migration 0003): why its image cannot be trusted
 * (missing, shorter than the disk, metadata cut off), null when whole. While it is set, new
 * snapshots of the disk are refused with 417 `Disk image is damaged` (manual, "all" and scheduled;
 * a scheduled slot then counts as failed, with its alert), since a snapshot of a broken image would
 * later "restore" the breakage. Rolling back or restoring a snapshot INTO the disk is the cure and
 * stays allowed.
 *
 * Set: by the agent's check before every create, by every sync (including the repair sync after an
 * interrupted task) and, in embedded mode, at start-up before any task runs. Cleared: by a
 * successful rollback or restore into the disk, or by a sync that finds the image whole.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Logger } from '../app-context.js';
import type { Database } from '../db/schema.js';
import type { StorageDriver } from '../storage/driver.js';

type Db = Kysely<Database> | Transaction<Database>;

/** Sets (reason) or clears (null) the flag of the disk at `path` of a VM. */
export async function setDamageByPath(db: Db, vmUuid: string, path: string, reason: string | null): Promise<void> {
  await db.updateTable('vm_disk').set({ damaged: reason }).where('vm_uuid', '=', vmUuid).where('path', '=', path).execute();
}

export async function clearDamage(db: Db, vmUuid: string, realId: number): Promise<void> {
  await db.updateTable('vm_disk').set({ damaged: null }).where('vm_uuid', '=', vmUuid).where('real_id', '=', realId).execute();
}

/**
 * Embedded start-up (after the drivers recovered, before any task is taken): every disk of this
 * node's storages whose image is damaged is flagged. Only sets: a flag set earlier is cleared by
 * what the module header says, so an operator sees a sync or a rollback confirm the image.
 */
export async function flagDamagedAtStart(db: Kysely<Database>, node: string, drivers: ReadonlyMap<string, StorageDriver>, log: Logger): Promise<number> {
  const rows = await db
    .selectFrom('vm_disk')
    .innerJoin('node_storage', 'node_storage.id', 'vm_disk.storage_id')
    .innerJoin('node', 'node.id', 'node_storage.node_id')
    .innerJoin('vm', 'vm.uuid', 'vm_disk.vm_uuid')
    .select(['vm_disk.vm_uuid', 'vm_disk.path', 'vm_disk.size_mb', 'vm_disk.damaged', 'node_storage.name as storage', 'vm.hostname', 'vm.qmp_socket'])
    .where('node.hostname', '=', node)
    .execute();
  let flagged = 0;
  for (const r of rows) {
    const driver = drivers.get(r.storage);
    if (!driver || r.damaged !== null) continue;
    // As snapshot.context.ts diskRef builds it for the tasks.
    const ref = { path: r.path, sizeBytes: r.size_mb * 1024 * 1024, qmpSocket: r.qmp_socket };
    const why = await driver.imageDamage(ref, { thorough: true }).catch((err: unknown) => {
      log.warn({ err, vm: r.hostname, path: r.path }, 'disk image check failed');
      return null;
    });
    if (why === null) continue;
    await setDamageByPath(db, r.vm_uuid, r.path, why);
    log.warn({ vm: r.hostname, path: r.path, storage: r.storage, reason: why }, 'disk image is damaged: new snapshots are refused until a rollback, a restore or a sync finds it whole');
    flagged++;
  }
  return flagged;
}
