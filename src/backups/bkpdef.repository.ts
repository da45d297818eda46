/**
 * Queries of backup definitions (`backup_define`), read joined with what the output names: the
 * VM's hostname and DC, the backup node's hostname and the backup storage's name; in extended mode
 * with the count of backups that name the definition (Danube's `backups`).
 */
import type { Insertable, Kysely, Transaction, Updateable } from 'kysely';
import type { Database, VmDiskRow } from '../db/schema.js';
import type { BackupDefineRow, BackupDefineTable } from './backup.schema.js';

type Db = Kysely<Database> | Transaction<Database>;

export interface BkpDefListRow extends BackupDefineRow {
  readonly hostname: string;
  readonly dc_name: string;
  readonly node_hostname: string;
  readonly storage_name: string;
  readonly backups?: number;
}

/** One VM (optionally one disk), every VM of a DC (of one owner), or every definition onto a node. */
export type BkpDefScope =
  | { readonly vmUuid: string; readonly diskRealId?: number }
  | { readonly dcId: number; readonly ownerId?: number }
  | { readonly nodeId: number };

export type BkpSortColumn = 'd.name' | 'd.disk_real_id' | 'vm.hostname' | 'd.id';
export interface BkpSortTerm {
  readonly column: BkpSortColumn;
  readonly desc: boolean;
}

function scoped(db: Db, scope: BkpDefScope) {
  let q = db
    .selectFrom('backup_define as d')
    .innerJoin('vm', 'vm.uuid', 'd.vm_uuid')
    .innerJoin('dc', 'dc.id', 'vm.dc_id')
    .innerJoin('node', 'node.id', 'd.node_id')
    .innerJoin('node_storage as ns', 'ns.id', 'd.storage_id');
  if ('vmUuid' in scope) {
    q = q.where('d.vm_uuid', '=', scope.vmUuid);
    if (scope.diskRealId !== undefined) q = q.where('d.disk_real_id', '=', scope.diskRealId);
  } else if ('nodeId' in scope) {
    q = q.where('d.node_id', '=', scope.nodeId);
  } else {
    q = q.where('vm.dc_id', '=', scope.dcId);
    if (scope.ownerId !== undefined) q = q.where('vm.owner_id', '=', scope.ownerId);
  }
  return q;
}

function rows(db: Db, scope: BkpDefScope, withCount: boolean) {
  return scoped(db, scope)
    .selectAll('d')
    .select(['vm.hostname as hostname', 'dc.name as dc_name', 'node.hostname as node_hostname', 'ns.name as storage_name'])
    .$if(withCount, (qb) =>
      qb.select((eb) =>
        eb.selectFrom('backup as b').select(eb.fn.countAll<number>().as('n')).whereRef('b.define_id', '=', 'd.id').as('backups'),
      ),
    );
}

function normalise<T extends { backups?: unknown }>(row: T): T {
  // PostgreSQL answers count(*) as a string.
  return row.backups === undefined || row.backups === null ? row : { ...row, backups: Number(row.backups) };
}

export async function listBkpDefs(db: Db, scope: BkpDefScope, order: readonly BkpSortTerm[], withCount: boolean): Promise<BkpDefListRow[]> {
  let q = rows(db, scope, withCount);
  for (const t of order) q = q.orderBy(t.column, t.desc ? 'desc' : 'asc');
  return (await q.execute()).map((r) => normalise(r as BkpDefListRow));
}

export async function listBkpDefNames(db: Db, scope: BkpDefScope, order: readonly BkpSortTerm[]): Promise<string[]> {
  let q = scoped(db, scope).select('d.name');
  for (const t of order) q = q.orderBy(t.column, t.desc ? 'desc' : 'asc');
  return (await q.execute()).map((r) => r.name);
}

export async function findBkpDef(db: Db, vmUuid: string, diskRealId: number, name: string, withCount = false): Promise<BkpDefListRow | undefined> {
  const row = await rows(db, { vmUuid, diskRealId }, withCount).where('d.name', '=', name).executeTakeFirst();
  return row ? normalise(row as BkpDefListRow) : undefined;
}

export async function countVmBkpDefs(db: Db, vmUuid: string): Promise<number> {
  const r = await db.selectFrom('backup_define').select((eb) => eb.fn.countAll<number>().as('n')).where('vm_uuid', '=', vmUuid).executeTakeFirstOrThrow();
  return Number(r.n);
}

/** The disks of the VMs a list covers (array disk ids are computed from them). */
export async function disksOfScope(db: Db, scope: BkpDefScope): Promise<VmDiskRow[]> {
  const uuids = scoped(db, scope).select('d.vm_uuid');
  return db.selectFrom('vm_disk').selectAll().where('vm_uuid', 'in', uuids).orderBy('real_id').execute();
}

export async function insertBkpDef(trx: Transaction<Database>, values: Insertable<BackupDefineTable>): Promise<void> {
  await trx.insertInto('backup_define').values(values).execute();
}

export async function updateBkpDef(trx: Transaction<Database>, id: number, patch: Updateable<BackupDefineTable>): Promise<boolean> {
  const r = await trx.updateTable('backup_define').set(patch).where('id', '=', id).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

export async function deleteBkpDef(trx: Transaction<Database>, id: number): Promise<void> {
  await trx.deleteFrom('backup_define').where('id', '=', id).execute();
}

/** A backup node of that hostname (the `node` field accepts nothing else). */
export async function findBackupNode(db: Db, hostname: string) {
  return db.selectFrom('node').selectAll().where('hostname', '=', hostname).where('is_backup', '=', 1).executeTakeFirst();
}

export async function findNodeStorage(db: Db, nodeId: number, name: string) {
  return db.selectFrom('node_storage').selectAll().where('node_id', '=', nodeId).where('name', '=', name).executeTakeFirst();
}
