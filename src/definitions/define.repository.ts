/**
 * Queries of snapshot definitions (`snapshot_define`). Rows are read joined with their VM's
 * hostname (output and ordering need it) and, in extended mode, with the count of snapshot rows
 * that name the definition, whatever their status or disk (spec 4.1).
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database, DefineRow, SnapshotDefineTable, VmDiskRow } from '../db/schema.js';
import type { Insertable, Updateable } from 'kysely';
import { lockRows } from '../db/capabilities.js';

type Db = Kysely<Database> | Transaction<Database>;

export interface DefineListRow extends DefineRow {
  readonly hostname: string;
  /** Present only when the count was asked for. */
  readonly snapshots?: number;
}

/** Which VMs a list covers: one VM, or every VM of a DC (owned by `ownerId` when given). */
export type DefineScope =
  | { readonly vmUuid: string; readonly diskRealId?: number }
  | { readonly dcId: number; readonly ownerId?: number };

export type SortColumn = 'd.name' | 'd.disk_real_id' | 'vm.hostname' | 'd.id';
export interface SortTerm {
  readonly column: SortColumn;
  readonly desc: boolean;
}

function scoped(db: Db, scope: DefineScope) {
  let q = db.selectFrom('snapshot_define as d').innerJoin('vm', 'vm.uuid', 'd.vm_uuid');
  if ('vmUuid' in scope) {
    q = q.where('d.vm_uuid', '=', scope.vmUuid);
    if (scope.diskRealId !== undefined) q = q.where('d.disk_real_id', '=', scope.diskRealId);
  } else {
    q = q.where('vm.dc_id', '=', scope.dcId);
    if (scope.ownerId !== undefined) q = q.where('vm.owner_id', '=', scope.ownerId);
  }
  return q;
}

function withHostname(db: Db, scope: DefineScope, withCount: boolean) {
  return scoped(db, scope)
    .selectAll('d')
    .select('vm.hostname')
    .$if(withCount, (qb) =>
      qb.select((eb) =>
        eb
          .selectFrom('snapshot as s')
          .select(eb.fn.countAll<number>().as('n'))
          .whereRef('s.define_id', '=', 'd.id')
          .as('snapshots'),
      ),
    );
}

function normalise(row: DefineRow & { hostname: string; snapshots?: unknown }): DefineListRow {
  const { snapshots, ...rest } = row;
  // COUNT(*) is a bigint on PostgreSQL; counts fit in a double.
  return snapshots === undefined ? rest : { ...rest, snapshots: Number(snapshots ?? 0) };
}

export async function listDefines(
  db: Db,
  scope: DefineScope,
  order: readonly SortTerm[],
  withCount: boolean,
): Promise<DefineListRow[]> {
  let q = withHostname(db, scope, withCount);
  for (const t of order) q = q.orderBy(t.column, t.desc ? 'desc' : 'asc');
  // Ties (same name on several VMs) keep a stable order across engines.
  if (!order.some((t) => t.column === 'd.id')) q = q.orderBy('d.id', 'desc');
  const rows = await q.execute();
  return rows.map(normalise);
}

export async function listDefineNames(db: Db, scope: DefineScope, order: readonly SortTerm[]): Promise<string[]> {
  let q = scoped(db, scope).select('d.name');
  for (const t of order) q = q.orderBy(t.column, t.desc ? 'desc' : 'asc');
  if (!order.some((t) => t.column === 'd.id')) q = q.orderBy('d.id', 'desc');
  return (await q.execute()).map((r) => r.name);
}

export async function findDefine(
  db: Db,
  vmUuid: string,
  diskRealId: number,
  name: string,
  withCount = false,
): Promise<DefineListRow | undefined> {
  const row = await withHostname(db, { vmUuid, diskRealId }, withCount).where('d.name', '=', name).executeTakeFirst();
  return row ? normalise(row) : undefined;
}

/** Definitions of a VM on all its disks (the DEFINE_LIMIT counts them all). */
export async function countVmDefines(db: Db, vmUuid: string): Promise<number> {
  const row = await db
    .selectFrom('snapshot_define')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('vm_uuid', '=', vmUuid)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The disks of every VM a list covers, to turn real disk ids into array ids in one query. */
export async function disksInScope(db: Db, scope: DefineScope): Promise<VmDiskRow[]> {
  let q = db.selectFrom('vm_disk').innerJoin('vm', 'vm.uuid', 'vm_disk.vm_uuid').selectAll('vm_disk');
  if ('vmUuid' in scope) q = q.where('vm_disk.vm_uuid', '=', scope.vmUuid);
  else {
    q = q.where('vm.dc_id', '=', scope.dcId);
    if (scope.ownerId !== undefined) q = q.where('vm.owner_id', '=', scope.ownerId);
  }
  return q.orderBy('vm_disk.vm_uuid').orderBy('vm_disk.real_id').execute();
}

/**
 * Serialises definition writes of one VM on PostgreSQL (the DEFINE_LIMIT count and the insert
 * must not interleave with another request's). SQLite transactions are already serial.
 */
export async function lockVmForDefines(trx: Transaction<Database>, vmUuid: string): Promise<void> {
  await lockRows(trx, trx.selectFrom('vm').select('uuid').where('uuid', '=', vmUuid));
}

export async function insertDefine(trx: Transaction<Database>, values: Insertable<SnapshotDefineTable>): Promise<number> {
  const row = await trx.insertInto('snapshot_define').values(values).returning('id').executeTakeFirstOrThrow();
  return row.id;
}

export async function updateDefine(
  trx: Transaction<Database>,
  id: number,
  patch: Updateable<SnapshotDefineTable>,
): Promise<boolean> {
  const res = await trx.updateTable('snapshot_define').set(patch).where('id', '=', id).executeTakeFirst();
  return Number(res.numUpdatedRows) > 0;
}

/** Deletes a definition; its snapshots stay, unlinked (Danube's ON DELETE SET NULL). */
export async function deleteDefine(trx: Transaction<Database>, id: number): Promise<void> {
  // Like Django's SET_NULL, the unlink does not touch the snapshots' `changed`.
  await trx.updateTable('snapshot').set({ define_id: null }).where('define_id', '=', id).execute();
  await trx.deleteFrom('snapshot_define').where('id', '=', id).execute();
}
