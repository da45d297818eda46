/**
 * PUT of one backup (Danube's vm_backup.py put): a note, esnap's verify, or a restore into a
 * stopped VM's disk on any node. `{"verify": true}` takes precedence, a PUT with only `note`
 * saves it, any other PUT is a restore, as in Danube. The tasks run on the backup node's queue.
 */
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import { requireAdmin } from '../accounts/caller.js';
import type { VmDiskRow } from '../db/schema.js';
import { ApiError, apiError, FailureError } from '../domain/errors.js';
import { NAME_RE, NOTE_FORBIDDEN, parseBool, validateFields } from '../domain/validate.js';
import { logDetail } from '../tasks/task-log.js';
import { vmTask } from '../tasks/vm-task.js';
import { ANNOUNCE_HOURS, announceRestore } from '../transport/trust.service.js';
import { diskLockKey, diskRef, logObject } from '../snapshots/snapshot.context.js';
import { notreadyOf } from '../snapshots/snapshot.rollback.js';
import { findVm, requireNodeOnline, resolveDisk, vmDisks, VM_STOPPED } from '../vms/vm.lookup.js';
import { BACKUP_DAMAGED, BACKUP_OK, BACKUP_RESTORE } from './backup.schema.js';
import type { BackupPayload } from './backup.payloads.js';
import { backupObject, type BackupObject } from './backup.output.js';
import {
  apiview,
  BACKUP_STATUS_NOT_OK,
  backupLockKey,
  baseDetail,
  location,
  LOG_BKP_UPDATE,
  LOG_BKP_VERIFY,
  logObj,
  NOT_ENOUGH_SPACE,
  requireBackupNodeOnline,
  type BackupTarget,
} from './backup.service.js';

export interface BackupRestoreContext {
  readonly backupId: number;
  readonly targetVm: string;
  readonly targetDiskRealId: number;
  /** The target's node when it is not the backup node: its restore announcement is withdrawn at the end. */
  readonly announcedTo?: string | null;
}

export interface BackupVerifyContext {
  readonly backupId: number;
  readonly vmHostname: string;
  readonly name: string;
  readonly diskId: number;
}

export async function putBackup(ctx: AppContext, caller: Caller, t: BackupTarget, data: Readonly<Record<string, unknown>>): Promise<{ task: string } | { sync: BackupObject }> {
  requireAdmin(caller);
  if (Object.hasOwn(data, 'verify') && parseBool(data['verify'])) return { task: await verifyBackup(ctx, caller, t) };
  if (Object.hasOwn(data, 'note')) return { sync: await saveNote(ctx, caller, t, data['note']) };
  return { task: await restoreBackup(ctx, caller, t, data) };
}

async function saveNote(ctx: AppContext, caller: Caller, t: BackupTarget, note: unknown): Promise<BackupObject> {
  const v = validateFields({ note }, { note: { kind: 'string', max: 128, forbidden: NOTE_FORBIDDEN, nullAsEmpty: true } });
  if (!v.ok) throw new FailureError(v.errors);
  const value = (v.value['note'] as string | undefined) ?? '';
  await ctx.db.updateTable('backup').set({ note: value, changed: ctx.clock.now().toISOString() }).where('id', '=', t.bkp.id).execute();
  return backupObject({ ...t.bkp, note: value }, caller.isAdmin, false);
}

async function verifyBackup(ctx: AppContext, caller: Caller, t: BackupTarget): Promise<string> {
  const bkp = t.bkp;
  if (bkp.status !== BACKUP_OK && bkp.status !== BACKUP_DAMAGED) throw new ApiError(417, BACKUP_STATUS_NOT_OK);
  const node = await requireBackupNodeOnline(ctx, bkp);
  const from = location(bkp);
  return ctx.tasks.submit<BackupVerifyContext>({
    kind: 'backup_verify',
    // The backup's VM may be gone: the task then belongs to the caller, in the backup's DC.
    ...vmTask(caller, { uuid: bkp.vm_uuid, owner_id: t.vm?.owner_id ?? caller.user.id, dc_id: bkp.dc_id }, node, 'e'),
    locks: [backupLockKey(bkp.vm_uuid ?? bkp.vm_hostname, bkp.disk_real_id)],
    apiview: apiview('PUT', bkp, bkp.vm_uuid !== null, { verify: true }),
    log: { msg: LOG_BKP_VERIFY, detail: logDetail(baseDetail(bkp)), object: logObj(t.vm, bkp) },
    prepare: async () => ({
      payload: { op: 'backup_verify', backupId: bkp.id, type: bkp.type, from, checksum: bkp.checksum } satisfies BackupPayload,
      context: { backupId: bkp.id, vmHostname: bkp.vm_hostname, name: bkp.name, diskId: bkp.vm_disk_id },
    }),
  });
}

async function restoreBackup(ctx: AppContext, caller: Caller, t: BackupTarget, data: Readonly<Record<string, unknown>>): Promise<string> {
  const bkp = t.bkp;
  const v = validateFields(
    { target_hostname_or_uuid: data['target_hostname_or_uuid'], target_disk_id: data['target_disk_id'], ...(Object.hasOwn(data, 'force') ? { force: data['force'] } : {}) },
    {
      target_hostname_or_uuid: { kind: 'string', required: true, max: 255, pattern: NAME_RE },
      target_disk_id: { kind: 'int', required: true, min: 1, max: 6 },
      force: { kind: 'bool' },
    },
  );
  if (!v.ok) throw new FailureError(v.errors);
  if (bkp.status !== BACKUP_OK) throw new ApiError(417, BACKUP_STATUS_NOT_OK);
  const node = await requireBackupNodeOnline(ctx, bkp);
  const vm = await findVm(ctx.db, caller, v.value['target_hostname_or_uuid'] as string);
  const tnode = await ctx.db.selectFrom('node').selectAll().where('id', '=', vm.node_id).executeTakeFirstOrThrow();
  requireNodeOnline(tnode);
  const disks = await vmDisks(ctx.db, vm.uuid);
  let disk: VmDiskRow;
  try {
    disk = resolveDisk(disks, v.value['target_disk_id']);
  } catch {
    throw new ApiError(412, 'Invalid target_disk_id');
  }
  if (disk.size_mb !== bkp.disk_size_mb) throw apiError('diskSizeMismatch');
  const storage = await ctx.db.selectFrom('node_storage').selectAll().where('id', '=', disk.storage_id).executeTakeFirstOrThrow();
  // The image is written aside before it is switched in: room for a whole disk is needed.
  if (storage.size_free !== null && storage.size_free < bkp.disk_size_mb * 1024 * 1024) throw new ApiError(428, NOT_ENOUGH_SPACE);
  const force = (v.value['force'] as boolean | undefined) ?? true;
  if (!force && (await ctx.db.selectFrom('snapshot').select('id').where('vm_uuid', '=', vm.uuid).where('disk_real_id', '=', disk.real_id).executeTakeFirst())) {
    throw apiError('vmHasSnapshots');
  }
  if (vm.status !== VM_STOPPED) throw apiError('vmNotStopped');
  const targetDiskId = disks.indexOf(disk) + 1;
  const from = location(bkp);
  const now = ctx.clock.now().toISOString();
  return ctx.tasks.submit<BackupRestoreContext>({
    kind: 'backup_restore',
    ...vmTask(caller, vm, node, 'e'),
    locks: [backupLockKey(vm.uuid, disk.real_id), diskLockKey(vm.uuid, disk.real_id)],
    apiview: apiview('PUT', bkp, bkp.vm_uuid !== null, {
      target_hostname: vm.hostname,
      target_disk_id: targetDiskId,
      force,
      source_hostname: bkp.vm_uuid ? bkp.vm_hostname : '',
    }),
    log: {
      msg: LOG_BKP_UPDATE,
      detail: logDetail([...baseDetail(bkp), ['target_hostname', vm.hostname], ['target_disk_id', targetDiskId]]),
      object: logObject(vm),
    },
    prepare: async (trx, taskId) => {
      // The target node's forced command writes the disk only for a restore announced to it; the
      // announcement goes before the task reaches the backup node's queue (sent after the commit).
      const announcedTo = tnode.id !== node.id ? tnode.hostname : null;
      if (announcedTo) {
        const until = new Date(Date.parse(now) + ANNOUNCE_HOURS * 3600_000).toISOString();
        await announceRestore(ctx, announcedTo, { taskId, storage: storage.name, disk: diskRef(vm, disk).path, sizeBytes: bkp.disk_size_mb * 1024 * 1024, until });
      }
      await trx.updateTable('backup').set({ status: BACKUP_RESTORE, status_change: now }).where('id', '=', bkp.id).execute();
      await trx.updateTable('vm').set({ status: notreadyOf(vm.status), changed: now }).where('uuid', '=', vm.uuid).execute();
      const payload: BackupPayload = {
        op: 'backup_restore',
        backupId: bkp.id,
        type: bkp.type,
        from,
        checksum: bkp.checksum,
        target: { node: tnode.hostname, storage: storage.name, disk: diskRef(vm, disk) },
        taskId,
        targetDriver: storage.driver,
      };
      return { payload, context: { backupId: bkp.id, targetVm: vm.uuid, targetDiskRealId: disk.real_id, announcedTo } };
    },
  });
}
