/**
 * PUT /vm/<vm>/snapshot/<name> without `note`/`pinned`: rollback of the same VM's disk, or restore
 * into another VM's disk on the same node (spec 4.5 PUT, with esnap's decisions).
 */
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import { apiError, validationFailed } from '../domain/errors.js';
import type { FieldErrors } from '../domain/validate.js';
import { NAME_RE, parseBool, validateFields } from '../domain/validate.js';
import { logDetail } from '../tasks/task-log.js';
import { rollbackKeepsNewer } from '../storage/capabilities.js';
import type { AgentPayload } from '../agent/payloads.js';
import { findVm, vmDisks, requireNodeOnline, requireOperational, VM_STOPPED } from '../vms/vm.lookup.js';
import type { VmDiskRow, VmRow } from '../db/schema.js';
import { SNAP_OK, SNAP_ROLLBACK, hasPendingTask, zfsName, type SnapshotView } from './snapshot.repository.js';
import { diskLockKey, diskRef, loadStorageAndNode, logObject, type DiskTarget } from './snapshot.context.js';

/** stopped→71, running→72, frozen→78, notcreated→79, other→7 (spec 7A.2); reverted by inverting. */
const NOTREADY: Readonly<Record<number, number>> = { 1: 71, 2: 72, 8: 78, 9: 79 };
export function notreadyOf(status: number): number {
  return NOTREADY[status] ?? 7;
}
export function revertNotready(status: number): number {
  for (const [from, to] of Object.entries(NOTREADY)) if (to === status) return Number(from);
  return status;
}

export interface RollbackContext {
  readonly snapshotId: number;
  readonly force: boolean;
  readonly sourceVm: string;
  readonly targetVm: string;
  readonly targetDiskRealId: number;
  /**
   * A rollback of the snapshot's own disk (not a restore into another disk, of this VM or another):
   * only then do rows of older snapshots stay when storage destroys the newer ones. Tasks queued
   * before this field was named carry it as `sameVm`, which held the same value.
   */
  readonly sameDisk: boolean;
  readonly keepsNewer: boolean;
}

export async function rollbackSnapshot(
  ctx: AppContext,
  caller: Caller,
  src: DiskTarget,
  snap: SnapshotView,
  data: Readonly<Record<string, unknown>>,
): Promise<string> {
  const fields = validateFields(data as Record<string, unknown>, {
    target_hostname_or_uuid: { kind: 'string', pattern: NAME_RE },
    target_disk_id: { kind: 'int', min: 1, max: 6 },
  });
  if (!fields.ok) throw validationFailed(fields.errors);
  const force = data['force'] === undefined ? true : parseBool(data['force']);
  const targetName = fields.value.target_hostname_or_uuid as string | undefined;
  const targetDiskId = fields.value.target_disk_id as number | undefined;
  const errors: FieldErrors = {};
  if (targetName !== undefined && targetDiskId === undefined) {
    errors['target_disk_id'] = ['This field is required when target_hostname_or_uuid is specified.'];
  }
  if (targetDiskId !== undefined && targetName === undefined) {
    errors['target_hostname_or_uuid'] = ['This field is required when target_disk_id is specified.'];
  }
  if (Object.keys(errors).length) throw validationFailed(errors);

  let targetVm: VmRow = src.vm;
  let targetDisk: VmDiskRow = src.disk;
  if (targetName !== undefined && targetDiskId !== undefined) {
    try {
      targetVm = await findVm(ctx.db, caller, targetName);
    } catch {
      throw validationFailed({ target_hostname_or_uuid: ['VM not found'] });
    }
    const tdisks = await vmDisks(ctx.db, targetVm.uuid);
    const d = tdisks[targetDiskId - 1];
    if (!d) throw validationFailed({ target_disk_id: ['Invalid disk_id'] });
    targetDisk = d;
  }
  const sameVm = targetVm.uuid === src.vm.uuid;
  // Restoring one disk of a VM into another of its disks is a restore too.
  const sameDisk = sameVm && targetDisk.real_id === src.disk.real_id;

  requireNodeOnline(src.node);
  if (!sameDisk) {
    const t = await loadStorageAndNode(ctx.db, targetDisk);
    // No brand check (Danube's 428 `VM brand mismatch`): every brand esnap accepts (kvm, bhyve,
    // hvm) is a hardware VM, and those restore into each other.
    if (!sameVm) {
      requireNodeOnline(t.node);
      requireOperational(targetVm);
    }
    if (targetDisk.size_mb !== src.disk.size_mb) throw apiError('diskSizeMismatch');
    if (t.node.id !== src.node.id || t.storage.id !== src.storage.id) throw apiError('otherNodeRestore');
  }
  requireOperational(src.vm);
  if (snap.status !== SNAP_OK) throw apiError('snapshotStatusNotOk');
  if (!force) {
    if (!sameDisk) {
      const has = await ctx.db
        .selectFrom('snapshot')
        .select('id')
        .where('vm_uuid', '=', targetVm.uuid)
        .where('disk_real_id', '=', targetDisk.real_id)
        .limit(1)
        .execute();
      if (has.length > 0) throw apiError('targetHasSnapshots');
    } else {
      const newer = await ctx.db
        .selectFrom('snapshot')
        .select('id')
        .where('vm_uuid', '=', src.vm.uuid)
        .where('disk_real_id', '=', src.disk.real_id)
        .where('id', '>', snap.id)
        .limit(1)
        .execute();
      if (newer.length > 0) throw apiError('moreRecentSnapshots');
    }
  }
  if (targetVm.status !== VM_STOPPED) throw apiError('vmNotStopped');
  if (await hasPendingTask(ctx.db, targetVm.uuid)) throw apiError('vmPendingTasks');

  const keepsNewer = rollbackKeepsNewer(src.storage.driver);
  const now = ctx.clock.now().toISOString();
  const pairs: Array<readonly [string, unknown]> = [
    ['snapname', snap.name],
    ['disk_id', src.diskArrayId],
  ];
  const apiview: Record<string, unknown> = {
    view: 'vm_snapshot',
    method: 'PUT',
    hostname: src.vm.hostname,
    disk_id: src.diskArrayId,
    snapname: snap.name,
    force,
  };
  if (!sameDisk) {
    const extra = [
      ['source_hostname', src.vm.hostname],
      ['target_hostname', targetVm.hostname],
      ['target_disk_id', targetDiskId ?? 1],
    ] as const;
    pairs.push(...extra);
    for (const [k, v] of extra) apiview[k] = v;
  }
  const target = targetVm;
  const tdisk = targetDisk;
  return ctx.tasks.submit<RollbackContext>({
    kind: 'snapshot_rollback',
    type: 'e',
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: target.owner_id,
    dcId: target.dc_id,
    dcBound: true,
    vmUuid: target.uuid,
    node: { id: src.node.id, hostname: src.node.hostname },
    locks: sameDisk
      ? [diskLockKey(src.vm.uuid, src.disk.real_id)]
      : [diskLockKey(src.vm.uuid, src.disk.real_id), diskLockKey(target.uuid, tdisk.real_id)],
    apiview,
    log: { msg: "Rollback snapshot of server's disk", detail: logDetail(pairs), object: logObject(target) },
    prepare: async (trx) => {
      const fresh = await trx.selectFrom('snapshot').select('status').where('id', '=', snap.id).executeTakeFirst();
      if (fresh?.status !== SNAP_OK) throw apiError('snapshotStatusNotOk');
      await trx.updateTable('snapshot').set({ status: SNAP_ROLLBACK, status_change: now, changed: now }).where('id', '=', snap.id).execute();
      await trx.updateTable('vm').set({ status: notreadyOf(target.status), changed: now }).where('uuid', '=', target.uuid).execute();
      if (!sameVm) {
        await trx.updateTable('vm').set({ status: notreadyOf(src.vm.status), changed: now }).where('uuid', '=', src.vm.uuid).execute();
      }
      const payload: AgentPayload = {
        op: 'rollback',
        storage: src.storage.name,
        disk: diskRef(src.vm, src.disk),
        id: zfsName(snap),
        ...(sameDisk ? {} : { target: diskRef(target, tdisk) }),
      };
      return {
        payload,
        context: {
          snapshotId: snap.id,
          force,
          sourceVm: src.vm.uuid,
          targetVm: target.uuid,
          targetDiskRealId: tdisk.real_id,
          sameDisk,
          keepsNewer,
        },
      };
    },
  });
}
