/**
 * Queries of the VM registry: VMs, their disks, and the rows that hang off them (snapshots and
 * snapshot definitions), plus the few lookups of users, nodes and storages that VM input names.
 * No rules here: those live in vm.service.ts and disk.service.ts.
 */
import type { Kysely, Transaction, Updateable } from 'kysely';
import { SYSTEM_USER_ID } from '../domain/system.js';
import type { Database, NodeRow, NodeStorageRow, TaskRow, UserRow, VmDiskRow, VmRow, VmTable } from '../db/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

/** The VMs of a DC in hostname order; only those of `ownerId` unless it is null (Admin). */
export async function listVms(db: Db, dcId: number, ownerId: number | null): Promise<VmRow[]> {
  let q = db.selectFrom('vm').selectAll().where('dc_id', '=', dcId);
  if (ownerId !== null) q = q.where('owner_id', '=', ownerId);
  return q.orderBy('hostname').execute();
}

/** What a VM object shows besides its own columns: owner name, node name and disk count. */
export interface VmRefs {
  readonly owners: ReadonlyMap<number, string>;
  readonly nodes: ReadonlyMap<number, string>;
  readonly diskCounts: ReadonlyMap<string, number>;
}

/** One query per table for any number of VMs, so a full list costs three queries, not 3×N. */
export async function vmRefs(db: Db, vms: readonly VmRow[]): Promise<VmRefs> {
  if (vms.length === 0) return { owners: new Map(), nodes: new Map(), diskCounts: new Map() };
  const ownerIds = [...new Set(vms.map((v) => v.owner_id))];
  const nodeIds = [...new Set(vms.map((v) => v.node_id))];
  const owners = await db.selectFrom('account').select(['id', 'username']).where('id', 'in', ownerIds).execute();
  const nodes = await db.selectFrom('node').select(['id', 'hostname']).where('id', 'in', nodeIds).execute();
  let countQ = db.selectFrom('vm_disk').select(['vm_uuid', (eb) => eb.fn.countAll<number | string>().as('n')]);
  // A single VM (define GET/PUT) filters by its uuid; a DC-wide list reads the counts of every VM,
  // which stays one small grouped scan instead of an IN list of thousands of uuids.
  if (vms.length === 1) countQ = countQ.where('vm_uuid', '=', vms[0]!.uuid);
  const counts = await countQ.groupBy('vm_uuid').execute();
  return {
    owners: new Map(owners.map((o) => [o.id, o.username])),
    nodes: new Map(nodes.map((n) => [n.id, n.hostname])),
    diskCounts: new Map(counts.map((c) => [c.vm_uuid, Number(c.n)])),
  };
}

/** A VM with this hostname or uuid anywhere (both are unique across DCs). */
export async function vmTaken(db: Db, hostname: string | null, uuid: string | null): Promise<boolean> {
  const row = await db
    .selectFrom('vm')
    .select('uuid')
    .where((eb) =>
      eb.or([...(hostname !== null ? [eb('hostname', '=', hostname)] : []), ...(uuid !== null ? [eb('uuid', '=', uuid)] : [])]),
    )
    .executeTakeFirst();
  return row !== undefined;
}

export async function vmByUuid(db: Db, uuid: string): Promise<VmRow | undefined> {
  return db.selectFrom('vm').selectAll().where('uuid', '=', uuid).executeTakeFirst();
}

// The new-VM row builder lives below the features (the libvirt inventory uses it too).
export { insertVm, newVmRow, type NewVm } from '../db/vm-rows.js';

/** The updated row, or undefined when the VM was deleted since it was read. */
export async function updateVm(db: Db, uuid: string, set: Updateable<VmTable>): Promise<VmRow | undefined> {
  return db.updateTable('vm').set(set).where('uuid', '=', uuid).returningAll().executeTakeFirst();
}

/** Conditional status change (start/stop): only from one of `from`, so a racing rollback wins. */
export async function changeVmStatus(db: Db, uuid: string, from: readonly number[], status: number, now: string): Promise<boolean> {
  const res = await db
    .updateTable('vm')
    .set({ status, status_change: now, changed: now })
    .where('uuid', '=', uuid)
    .where('status', 'in', [...from])
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

/**
 * Spec 14: a VM goes with its disks, snapshot rows and snapshot and backup definitions; its
 * backups stay (Danube: vm set null), reached through the original hostname.
 */
export async function deleteVmRows(trx: Transaction<Database>, uuid: string): Promise<void> {
  await trx.deleteFrom('snapshot').where('vm_uuid', '=', uuid).execute();
  await trx.deleteFrom('snapshot_define').where('vm_uuid', '=', uuid).execute();
  await trx.updateTable('backup').set({ vm_uuid: null, define_id: null }).where('vm_uuid', '=', uuid).execute();
  await trx.deleteFrom('backup_define').where('vm_uuid', '=', uuid).execute();
  await trx.deleteFrom('vm_disk').where('vm_uuid', '=', uuid).execute();
  await trx.deleteFrom('vm').where('uuid', '=', uuid).execute();
}

/** Spec 14: a removed disk takes the snapshot rows and definitions of its real id with it. */
export async function deleteDiskRows(trx: Transaction<Database>, vmUuid: string, realId: number): Promise<void> {
  await trx.deleteFrom('snapshot').where('vm_uuid', '=', vmUuid).where('disk_real_id', '=', realId).execute();
  await trx.deleteFrom('snapshot_define').where('vm_uuid', '=', vmUuid).where('disk_real_id', '=', realId).execute();
  const defines = trx.selectFrom('backup_define').select('id').where('vm_uuid', '=', vmUuid).where('disk_real_id', '=', realId);
  await trx.updateTable('backup').set({ define_id: null }).where('define_id', 'in', defines).execute();
  await trx.deleteFrom('backup_define').where('vm_uuid', '=', vmUuid).where('disk_real_id', '=', realId).execute();
  await trx.deleteFrom('vm_disk').where('vm_uuid', '=', vmUuid).where('real_id', '=', realId).execute();
}

export async function insertDisk(
  db: Db,
  row: { vm_uuid: string; real_id: number; storage_id: number; path: string; size_mb: number; created: string },
): Promise<VmDiskRow> {
  return db.insertInto('vm_disk').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function diskAtPath(db: Db, storageId: number, path: string): Promise<VmDiskRow | undefined> {
  return db.selectFrom('vm_disk').selectAll().where('storage_id', '=', storageId).where('path', '=', path).executeTakeFirst();
}

export async function diskHasSnapshots(db: Db, vmUuid: string, realId: number): Promise<boolean> {
  const row = await db
    .selectFrom('snapshot')
    .select('id')
    .where('vm_uuid', '=', vmUuid)
    .where('disk_real_id', '=', realId)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** A user who may own a VM: `_system` is internal and never an owner. */
export async function userByName(db: Db, username: string): Promise<UserRow | undefined> {
  return db
    .selectFrom('account')
    .selectAll()
    .where('username', '=', username)
    .where('id', '!=', SYSTEM_USER_ID)
    .executeTakeFirst();
}

export async function nodeByHostname(db: Db, hostname: string): Promise<NodeRow | undefined> {
  return db.selectFrom('node').selectAll().where('hostname', '=', hostname).executeTakeFirst();
}

export async function storagesByIds(db: Db, ids: readonly number[]): Promise<Map<number, NodeStorageRow>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('node_storage').selectAll().where('id', 'in', [...new Set(ids)]).execute();
  return new Map(rows.map((r) => [r.id, r]));
}

/** The VM's tasks that have not ended, oldest first (Danube's pending-task map, spec 7.5). */
export async function activeVmTasks(db: Db, vmUuid: string): Promise<TaskRow[]> {
  return db
    .selectFrom('task')
    .selectAll()
    .where('vm_uuid', '=', vmUuid)
    .where('state', 'in', ['PENDING', 'STARTED'])
    .orderBy('created')
    .orderBy('id')
    .execute();
}

export async function lockHeld(db: Db, key: string): Promise<boolean> {
  return (await db.selectFrom('task_lock').select('key').where('key', '=', key).executeTakeFirst()) !== undefined;
}
