/**
 * Looking up the VM and disk a request names, with Danube's rules (spec 3.5, 2.4): the VM is
 * found by hostname or uuid in the request's DC, owned by the caller unless Admin, else 404
 * `VM not found`; `disk_id` is the 1-based position in the VM's disk list, else 412.
 */
import type { Kysely } from 'kysely';
import type { Caller } from '../accounts/caller.js';
import type { Database, NodeRow, NodeStorageRow, VmDiskRow, VmRow } from '../db/schema.js';
import { apiError } from '../domain/errors.js';
import { parseIntField } from '../domain/validate.js';
import { dcSettings } from '../accounts/dc.settings.js';

import { VM_NOTREADY, VM_RUNNING, VM_STOPPED, VM_STOPPING } from '../domain/vm.js';

export { VM_NOTREADY, VM_RUNNING, VM_STOPPED, VM_STOPPING };
/** The lock a task on one disk takes (snapshot tasks, restores, a VM start). */
export function diskLockKey(vmUuid: string, realId: number): string {
  return `vm_snapshot vm:${vmUuid} disk:${realId}`;
}

export const OPERATIONAL_VM_STATUSES: ReadonlySet<number> = new Set([VM_RUNNING, VM_STOPPED, VM_STOPPING]);

export const VM_STATUS_NAMES: Readonly<Record<number, string>> = {
  1: 'stopped',
  2: 'running',
  3: 'stopping',
  7: 'notready',
  71: 'stopped-',
  72: 'running-',
  8: 'frozen',
  9: 'notcreated',
  99: 'error',
};

export async function findVm(
  db: Kysely<Database>,
  caller: Caller,
  hostnameOrUuid: string,
  opts: { ignoreOwner?: boolean } = {},
): Promise<VmRow> {
  const base = db.selectFrom('vm').selectAll().where('dc_id', '=', caller.dc.id);
  const owned = caller.isAdmin || opts.ignoreOwner ? base : base.where('owner_id', '=', caller.user.id);
  const rows = await owned
    .where((eb) => eb.or([eb('hostname', '=', hostnameOrUuid), eb('uuid', '=', hostnameOrUuid)]))
    .limit(2)
    .execute();
  if (rows.length === 1) return rows[0]!;
  if (rows.length > 1) {
    const byName = rows.find((r) => r.hostname === hostnameOrUuid);
    if (byName) return byName;
  }
  throw apiError('vmNotFound');
}

/** The VM's disks in array order (by real id). */
export async function vmDisks(db: Kysely<Database>, vmUuid: string): Promise<VmDiskRow[]> {
  return db.selectFrom('vm_disk').selectAll().where('vm_uuid', '=', vmUuid).orderBy('real_id').execute();
}

/** Array disk id (1-based) → disk row; 412 `Invalid disk_id` otherwise. `undefined` means the default 1. */
export function resolveDisk(disks: readonly VmDiskRow[], raw: unknown, dflt = 1): VmDiskRow {
  // Danube's `int(disk_id)`: a JSON number is truncated (1.5 names disk 1; a create then refuses
  // 1.5 in its field check), a boolean is 0 or 1; strings must be whole numbers.
  const n =
    raw === undefined
      ? dflt
      : typeof raw === 'number' && Number.isFinite(raw)
        ? Math.trunc(raw) + 0
        : typeof raw === 'boolean'
          ? Number(raw)
          : parseIntField(raw);
  if (n === null || n < 1 || n > disks.length) throw apiError('invalidDiskId');
  return disks[n - 1]!;
}

/** Real disk id → array disk id, computed from the current disk list (0 when the disk is gone). */
export function arrayDiskId(disks: readonly VmDiskRow[], realId: number): number {
  const i = disks.findIndex((d) => d.real_id === realId);
  return i + 1;
}

export async function vmNode(db: Kysely<Database>, vm: VmRow): Promise<NodeRow> {
  return db.selectFrom('node').selectAll().where('id', '=', vm.node_id).executeTakeFirstOrThrow();
}

export async function diskStorage(db: Kysely<Database>, disk: VmDiskRow): Promise<NodeStorageRow> {
  return db.selectFrom('node_storage').selectAll().where('id', '=', disk.storage_id).executeTakeFirstOrThrow();
}

export function requireNodeOnline(node: NodeRow): void {
  if (node.status !== 2) throw apiError('nodeNotOperational');
}

export function requireOperational(vm: VmRow): void {
  if (!OPERATIONAL_VM_STATUSES.has(vm.status)) throw apiError('vmNotOperational');
}

/** The snapshot module switch of the caller's DC (404 `Not found` when off), checked after permissions. */
export function requireSnapshotsEnabled(caller: Caller): void {
  if (!dcSettings(caller.dc).VMS_VM_SNAPSHOT_ENABLED) throw apiError('notFound');
}
