/**
 * Queries of backups (`backup`), joined with what the output names that may still exist: the
 * VM's current hostname and the definition's name. Everything else is read from the row itself,
 * which keeps it by value (the VM, node or storage may be gone).
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import type { OrderBy } from '../domain/order-by.js';
import type { BackupRow } from './backup.schema.js';

type Db = Kysely<Database> | Transaction<Database>;

export interface BackupListRow extends BackupRow {
  readonly vm_current_hostname: string | null;
  readonly define_name: string | null;
  readonly dc_name: string;
}

export interface BackupScope {
  readonly dcId?: number;
  readonly vmUuid?: string;
  /** The original hostname (backups of a deleted VM). */
  readonly vmHostname?: string;
  readonly nodeId?: number;
  readonly nodeHostname?: string;
  /** Danube's `vm` filter of the node list: a hostname, or '' for backups whose VM is gone. */
  readonly vmHostnameFilter?: string;
  /** Array disk id at backup time. */
  readonly diskId?: number;
  readonly define?: string;
  /** Only backups of existing VMs owned by this user (what a non-admin sees). */
  readonly ownerId?: number;
}

const COLUMNS: Readonly<Record<string, 'b.name' | 'b.size' | 'b.time' | 'b.id' | 'b.vm_hostname' | 'b.vm_disk_id'>> = {
  name: 'b.name',
  size: 'b.size',
  time: 'b.time',
  created: 'b.id',
  hostname: 'b.vm_hostname',
  disk_id: 'b.vm_disk_id',
};

function scoped(db: Db, s: BackupScope) {
  let q = db
    .selectFrom('backup as b')
    .innerJoin('dc', 'dc.id', 'b.dc_id')
    .leftJoin('vm', 'vm.uuid', 'b.vm_uuid')
    .leftJoin('backup_define as d', 'd.id', 'b.define_id');
  if (s.dcId !== undefined) q = q.where('b.dc_id', '=', s.dcId);
  if (s.vmUuid !== undefined) q = q.where('b.vm_uuid', '=', s.vmUuid);
  if (s.vmHostname !== undefined) q = q.where('b.vm_hostname', '=', s.vmHostname);
  if (s.nodeId !== undefined) q = q.where('b.node_id', '=', s.nodeId);
  if (s.nodeHostname !== undefined) q = q.where('b.node_hostname', '=', s.nodeHostname);
  if (s.vmHostnameFilter !== undefined) q = s.vmHostnameFilter === '' ? q.where('b.vm_uuid', 'is', null) : q.where('b.vm_hostname', '=', s.vmHostnameFilter);
  if (s.diskId !== undefined) q = q.where('b.vm_disk_id', '=', s.diskId);
  if (s.define !== undefined) q = q.where('d.name', '=', s.define);
  if (s.ownerId !== undefined) q = q.where('vm.owner_id', '=', s.ownerId);
  return q.selectAll('b').select(['vm.hostname as vm_current_hostname', 'd.name as define_name', 'dc.name as dc_name']);
}

function normalise(r: BackupListRow): BackupListRow {
  // PostgreSQL answers bigint as a string.
  return r.size === null || typeof r.size === 'number' ? r : { ...r, size: Number(r.size) };
}

export async function listBackups(db: Db, scope: BackupScope, order: readonly OrderBy<string>[]): Promise<BackupListRow[]> {
  let q = scoped(db, scope);
  for (const o of order) q = q.orderBy(COLUMNS[o.field]!, o.desc ? 'desc' : 'asc');
  return (await q.execute()).map((r) => normalise(r as BackupListRow));
}

export async function findBackup(db: Db, scope: BackupScope, name: string): Promise<BackupListRow | undefined> {
  const r = await scoped(db, scope).where('b.name', '=', name).executeTakeFirst();
  return r ? normalise(r as BackupListRow) : undefined;
}

export async function findBackups(db: Db, scope: BackupScope, names: readonly string[]): Promise<BackupListRow[]> {
  return (await scoped(db, scope).where('b.name', 'in', names).orderBy('b.id').execute()).map((r) => normalise(r as BackupListRow));
}

export async function countBackups(db: Db, scope: BackupScope): Promise<number> {
  return (await scoped(db, scope).execute()).length;
}

/** Bytes of the DC's backups (Danube's Backup.get_total_dc_size). */
export async function dcBackupSize(db: Db, dcId: number): Promise<number> {
  const r = await db.selectFrom('backup').select((eb) => eb.fn.sum<number>('size').as('n')).where('dc_id', '=', dcId).executeTakeFirst();
  return Number(r?.n ?? 0);
}

export async function findBackupsById(db: Db, ids: readonly number[]): Promise<BackupListRow[]> {
  if (ids.length === 0) return [];
  return (await scoped(db, {}).where('b.id', 'in', [...ids]).orderBy('b.id').execute()).map((r) => normalise(r as BackupListRow));
}
