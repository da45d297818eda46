/**
 * The part of a TaskSpec that every task a caller runs on a VM's node shares: Danube's DC-bound
 * task of the caller on the VM, owned by the VM's owner, queued for the VM's node. Callers add the
 * kind, locks, apiview, log and prepare.
 *
 * Example:
 *   ctx.tasks.submit({ kind: 'disk_delete', ...vmTask(caller, vm, node), locks, apiview, log, prepare });
 */
import type { VmRow } from '../db/schema.js';
import type { Caller } from '../accounts/caller.js';
import type { TaskSpec } from './task.types.js';

type VmTaskFields = Pick<TaskSpec, 'type' | 'userId' | 'username' | 'ownerId' | 'dcId' | 'dcBound' | 'vmUuid' | 'node'>;

export function vmTask(
  caller: Caller,
  // uuid null: a task on what a deleted VM left (its backups), with the owner and DC it had.
  vm: Pick<VmRow, 'owner_id' | 'dc_id'> & { readonly uuid: VmRow['uuid'] | null },
  node: { readonly id: number; readonly hostname: string },
  type: TaskSpec['type'] = 'e',
): VmTaskFields {
  return {
    type,
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: vm.owner_id,
    dcId: vm.dc_id,
    dcBound: true,
    vmUuid: vm.uuid,
    node: { id: node.id, hostname: node.hostname },
  };
}
