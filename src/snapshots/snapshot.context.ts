/**
 * Shared pieces of the snapshot operations: the target (VM, disk, storage, node) a request names,
 * lock keys, the disk reference sent to agents, and the system caller for internal operations.
 */
import type { Kysely } from 'kysely';
import type { AppContext } from '../app-context.js';
import { SYSTEM_USER_ID } from '../domain/system.js';
import type { Database, NodeRow, NodeStorageRow, VmDiskRow, VmRow } from '../db/schema.js';
import type { Caller } from '../accounts/caller.js';
import type { DiskRef } from '../storage/driver.js';
import { apiError } from '../domain/errors.js';
import { NO_STORAGE_ID } from '../hypervisor/libvirt.domains.js';

export interface DiskTarget {
  readonly vm: VmRow;
  readonly disks: readonly VmDiskRow[];
  readonly disk: VmDiskRow;
  /** 1-based position of `disk` in `disks`. */
  readonly diskArrayId: number;
  readonly storage: NodeStorageRow;
  readonly node: NodeRow;
}

export { diskLockKey } from '../vms/vm.lookup.js';

export function diskRef(vm: VmRow, disk: VmDiskRow): DiskRef {
  return { path: disk.path, sizeBytes: disk.size_mb * 1024 * 1024, qmpSocket: vm.qmp_socket, ...(vm.libvirt === 1 ? { libvirtDomain: vm.uuid } : {}) };
}

export async function loadStorageAndNode(
  db: Kysely<Database>,
  disk: VmDiskRow,
): Promise<{ storage: NodeStorageRow; node: NodeRow }> {
  // A libvirt disk that lies on no esnap storage is listed with storage id 0 (src/hypervisor/).
  if (disk.storage_id === NO_STORAGE_ID) throw apiError('diskNotOnStorage');
  const storage = await db.selectFrom('node_storage').selectAll().where('id', '=', disk.storage_id).executeTakeFirstOrThrow();
  const node = await db.selectFrom('node').selectAll().where('id', '=', storage.node_id).executeTakeFirstOrThrow();
  return { storage, node };
}

/** The `_system` user acting in a VM's DC: scheduled runs, retention, repair syncs. */
export async function systemCaller(ctx: AppContext, dcId: number): Promise<Caller> {
  const user = await ctx.db.selectFrom('account').selectAll().where('id', '=', SYSTEM_USER_ID).executeTakeFirstOrThrow();
  const dc = await ctx.db.selectFrom('dc').selectAll().where('id', '=', dcId).executeTakeFirstOrThrow();
  return { user, dc, isAdmin: true, isSuperAdmin: true };
}

export function logObject(vm: VmRow): { type: string; name: string; alias: string; pk: string } {
  return { type: 'vm', name: vm.hostname, alias: vm.alias, pk: vm.uuid };
}
