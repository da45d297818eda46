/**
 * What the API may not do to a libvirt-discovered VM (issue 14): its definition and disks follow
 * libvirt, so disks are neither created nor edited through esnap; an attached disk is never
 * deleted (that would remove an image the domain uses), a detached one may be (with its
 * snapshots); the VM itself may be deleted only once its domain is gone (`notcreated`), since a
 * deletion removes its images. Answered 403 `You do not have permission to perform this action.`
 */
import type { Kysely } from 'kysely';
import type { Database, VmRow } from '../db/schema.js';
import { apiError } from '../domain/errors.js';
import { resolveDisk, vmDisks } from './vm.lookup.js';

const VM_NOTCREATED = 9;

export function refuseLibvirtDiskChange(vm: VmRow): void {
  if (vm.libvirt === 1) throw apiError('noPermission');
}

export async function refuseLibvirtDiskDelete(db: Kysely<Database>, vm: VmRow, rawId: string | undefined): Promise<void> {
  if (vm.libvirt !== 1) return;
  const disk = resolveDisk(await vmDisks(db, vm.uuid), rawId ?? '');
  if (disk.detached !== 1 || disk.unmapped !== null) throw apiError('noPermission');
}

export function refuseLibvirtVmDelete(vm: VmRow): void {
  if (vm.libvirt === 1 && vm.status !== VM_NOTCREATED) throw apiError('noPermission');
}
