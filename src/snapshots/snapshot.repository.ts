/** Snapshot queries. Rows become API objects in snapshot.output.ts. */
import type { Kysely, Transaction } from 'kysely';
import type { Database, SnapshotRow } from '../db/schema.js';

export const SNAP_OK = 1;
export const SNAP_PENDING = 2;
export const SNAP_ROLLBACK = 3;
export const SNAP_LOST = 4;
export const TYPE_AUTO = 1;
export const TYPE_MANUAL = 2;

type Db = Kysely<Database> | Transaction<Database>;

/** A snapshot row joined with what its API object shows. */
export interface SnapshotView extends SnapshotRow {
  hostname: string;
  define_name: string | null;
}

export interface ListFilter {
  vmUuid?: string;
  storageId?: number;
  diskRealId?: number;
  type?: number;
  define?: string;
  hostname?: string;
  dcId?: number;
  /** Non-admins see only their own VMs' snapshots. */
  ownerId?: number;
}

export type SortField = 'name' | 'disk_id' | 'size' | 'created' | 'hostname';
export interface Sort {
  readonly field: SortField;
  readonly desc: boolean;
}

const SORT_COLUMNS = {
  name: 'snapshot.name',
  disk_id: 'snapshot.disk_real_id',
  size: 'snapshot.size',
  created: 'snapshot.id',
  hostname: 'vm.hostname',
} as const;

export async function listSnapshots(db: Db, f: ListFilter, sort: readonly Sort[]): Promise<SnapshotView[]> {
  let q = db
    .selectFrom('snapshot')
    .innerJoin('vm', 'vm.uuid', 'snapshot.vm_uuid')
    .leftJoin('snapshot_define', 'snapshot_define.id', 'snapshot.define_id')
    .selectAll('snapshot')
    .select(['vm.hostname as hostname', 'snapshot_define.name as define_name']);
  if (f.vmUuid !== undefined) q = q.where('snapshot.vm_uuid', '=', f.vmUuid);
  if (f.storageId !== undefined) q = q.where('snapshot.storage_id', '=', f.storageId);
  if (f.diskRealId !== undefined) q = q.where('snapshot.disk_real_id', '=', f.diskRealId);
  if (f.type !== undefined) q = q.where('snapshot.type', '=', f.type);
  if (f.define !== undefined) q = q.where('snapshot_define.name', '=', f.define);
  if (f.hostname !== undefined) q = q.where('vm.hostname', '=', f.hostname);
  if (f.dcId !== undefined) q = q.where('vm.dc_id', '=', f.dcId);
  if (f.ownerId !== undefined) q = q.where('vm.owner_id', '=', f.ownerId);
  for (const s of sort) q = q.orderBy(SORT_COLUMNS[s.field], s.desc ? 'desc' : 'asc');
  return (await q.execute()) as SnapshotView[];
}

export async function findSnapshot(db: Db, vmUuid: string, diskRealId: number, name: string): Promise<SnapshotView | undefined> {
  const rows = await db
    .selectFrom('snapshot')
    .innerJoin('vm', 'vm.uuid', 'snapshot.vm_uuid')
    .leftJoin('snapshot_define', 'snapshot_define.id', 'snapshot.define_id')
    .selectAll('snapshot')
    .select(['vm.hostname as hostname', 'snapshot_define.name as define_name'])
    .where('snapshot.vm_uuid', '=', vmUuid)
    .where('snapshot.disk_real_id', '=', diskRealId)
    .where('snapshot.name', '=', name)
    .execute();
  return rows[0] as SnapshotView | undefined;
}

export async function setStatus(db: Db, ids: readonly number[], status: number, now: string): Promise<void> {
  if (ids.length === 0) return;
  await db.updateTable('snapshot').set({ status, status_change: now, changed: now }).where('id', 'in', [...ids]).execute();
}

export async function deleteSnapshots(db: Db, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await db.deleteFrom('snapshot').where('id', 'in', [...ids]).execute();
}

/** Count of a VM's snapshots of one type, all disks and statuses (spec 4.5 step 5). */
export async function countByType(db: Db, vmUuid: string, type: number): Promise<number> {
  const r = await db
    .selectFrom('snapshot')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('vm_uuid', '=', vmUuid)
    .where('type', '=', type)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Sum of snapshot sizes in bytes; lost rows never count (esnap decision). */
export async function sumSizes(db: Db, by: { vmUuid?: string; dcId?: number }): Promise<number> {
  let q = db
    .selectFrom('snapshot')
    .innerJoin('vm', 'vm.uuid', 'snapshot.vm_uuid')
    .select((eb) => eb.fn.sum<number>('snapshot.size').as('total'))
    .where('snapshot.status', '!=', SNAP_LOST);
  if (by.vmUuid !== undefined) q = q.where('snapshot.vm_uuid', '=', by.vmUuid);
  if (by.dcId !== undefined) q = q.where('vm.dc_id', '=', by.dcId);
  const r = await q.executeTakeFirstOrThrow();
  return Number(r.total ?? 0);
}

/** Whether any snapshot task other than `exceptTaskId` is pending or running for the VM. */
export async function hasPendingSnapshotTask(db: Db, vmUuid: string, exceptTaskId?: string): Promise<boolean> {
  let q = db
    .selectFrom('task')
    .select('id')
    .where('vm_uuid', '=', vmUuid)
    .where('state', 'in', ['PENDING', 'STARTED'])
    .where('kind', 'like', 'snapshot_%');
  if (exceptTaskId) q = q.where('id', '!=', exceptTaskId);
  return (await q.limit(1).execute()).length > 0;
}

export async function hasPendingTask(db: Db, vmUuid: string): Promise<boolean> {
  const rows = await db.selectFrom('task').select('id').where('vm_uuid', '=', vmUuid).where('state', 'in', ['PENDING', 'STARTED']).limit(1).execute();
  return rows.length > 0;
}

export function zfsName(row: Pick<SnapshotRow, 'id' | 'type'>): string {
  return `${row.type === TYPE_AUTO ? 'a' : 'e'}s-${row.id}`;
}
