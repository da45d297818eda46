/**
 * Completion of backup tasks, in the one completion transaction: a created backup becomes OK with
 * what the agent measured (or goes: nothing half-made is listed), a restore gives the backup and
 * the VM their statuses back, a verify marks the backup OK or damaged (5, with an alert), a
 * delete removes the rows (or gives them back their status).
 */
import { withdrawRestore } from '../transport/trust.service.js';
import type { AppContext } from '../app-context.js';
import type { KindHandler, TaskOutcome, TaskResult } from '../tasks/task.types.js';
import { clearDamage } from '../vms/disk.damage.js';
import { revertNotready } from '../snapshots/snapshot.rollback.js';
import { alerts } from '../alerts/alert.messages.js';
import { BACKUP_DAMAGED, BACKUP_OK, BACKUP_PENDING } from './backup.schema.js';
import type { BackupCreated, BackupPresent, BackupRestored, BackupVerified } from './backup.payloads.js';
import type { BackupCheckContext, BackupCreateContext, BackupDeleteContext } from './backup.service.js';
import type { BackupRestoreContext, BackupVerifyContext } from './backup.put.js';
import { runBackupRetention } from './backup.retention.js';
import { submitBackupCheck, submitCleanup } from './backup.service.js';

function failed(outcome: TaskOutcome): TaskResult {
  return { returncode: outcome.returncode || 1, message: outcome.message, detail: outcome.detail ?? `Got bad return code (${outcome.returncode}). Error: ${outcome.message}` };
}

function alertOf(ctx: AppContext) {
  return ctx.automation.alerts;
}

export function registerBackupKinds(ctx: AppContext): void {
  ctx.tasks.registerKind<BackupCreateContext>('backup_create', {
    async complete(trx, task, c, outcome) {
      const now = ctx.clock.now().toISOString();
      if (c.announcedTo) await withdrawRestore(ctx, c.announcedTo, task.id);
      const bkp = await trx.selectFrom('backup').selectAll().where('id', '=', c.backupId).executeTakeFirst();
      const define = await trx.selectFrom('backup_define').select(['name']).where('id', '=', c.defineId).executeTakeFirst();
      if (outcome.returncode !== 0) {
        await trx.deleteFrom('backup').where('id', '=', c.backupId).execute();
        await trx.updateTable('backup_define').set({ last_error: outcome.message, last_run: now }).where('id', '=', c.defineId).execute();
        if (c.slot) await trx.updateTable('backup_slot').set({ state: 'failed', reason: outcome.message, changed: now }).where('define_id', '=', c.defineId).where('slot', '=', c.slot).execute();
        const sink = alertOf(ctx);
        const a = bkp && !outcome.cancelled ? alerts.backupFailed(bkp.vm_hostname, bkp.vm_disk_id, bkp.name, define?.name ?? null, 'created') : null;
        const vm = await trx.selectFrom('vm').select(['uuid', 'hostname', 'alias', 'owner_id', 'dc_id']).where('uuid', '=', c.vmUuid).executeTakeFirst();
        const node = bkp ? { id: bkp.node_id, hostname: bkp.node_hostname } : null;
        const after = async (): Promise<void> => {
          if (a && sink) sink.send(a);
          // What the create left (its source snapshot, a partial restic snapshot) goes in a task of its own.
          if (c.cleanup && vm && node) await submitCleanup(ctx, node, vm, c.cleanup).catch((err: unknown) => ctx.log.error({ err, backupId: c.backupId }, 'backup cleanup not started'));
        };
        return { result: failed(outcome), after };
      }
      const d = (outcome.data ?? {}) as Partial<BackupCreated>;
      // No ok row without data: an outcome that does not name the stored data fails the backup.
      if (!(d.resticId || d.filePath) || !d.checksum) {
        await trx.deleteFrom('backup').where('id', '=', c.backupId).execute();
        if (c.slot) await trx.updateTable('backup_slot').set({ state: 'failed', reason: 'Backup agent reported no data', changed: now }).where('define_id', '=', c.defineId).where('slot', '=', c.slot).execute();
        return { result: { returncode: 1, message: 'Backup agent reported no data', detail: 'Got bad return code (1). Error: Backup agent reported no data' } };
      }
      await trx
        .updateTable('backup')
        .set({
          status: BACKUP_OK,
          restic_id: d.resticId ?? null,
          ...(d.filePath ? { file_path: d.filePath } : {}),
          ...(d.baseSnapshot !== undefined ? { base_snapshot: d.baseSnapshot, last: d.baseSnapshot ? 1 : 0 } : {}),
          checksum: d.checksum,
          size: d.size ?? null,
          time: d.seconds ?? null,
          status_change: now,
          changed: now,
        })
        .where('id', '=', c.backupId)
        .execute();
      await trx.updateTable('backup_define').set({ last_success: now, last_run: now, last_error: null }).where('id', '=', c.defineId).execute();
      const result: TaskResult = { returncode: 0, message: 'Backup successfully created', detail: outcome.detail ?? '' };
      return { result, after: () => runBackupRetention(ctx, c.defineId, task.id) };
    },
  });

  ctx.tasks.registerKind<BackupRestoreContext>('backup_restore', {
    async complete(trx, task, c, outcome) {
      const now = ctx.clock.now().toISOString();
      if (c.announcedTo) await withdrawRestore(ctx, c.announcedTo, task.id);
      await trx.updateTable('backup').set({ status: BACKUP_OK, status_change: now }).where('id', '=', c.backupId).execute();
      const vm = await trx.selectFrom('vm').select('status').where('uuid', '=', c.targetVm).executeTakeFirst();
      if (vm) await trx.updateTable('vm').set({ status: revertNotready(vm.status), changed: now }).where('uuid', '=', c.targetVm).execute();
      if (outcome.returncode !== 0) return { result: failed(outcome) };
      await clearDamage(trx, c.targetVm, c.targetDiskRealId);
      // A dataset backup that replaced the disk's dataset took the disk's snapshots with the old one
      // (force, Danube's default; without it a disk with snapshots was refused with 417).
      if ((outcome.data as Partial<BackupRestored> | undefined)?.snapshotsGone === true) {
        await trx.deleteFrom('snapshot').where('vm_uuid', '=', c.targetVm).where('disk_real_id', '=', c.targetDiskRealId).execute();
      }
      return { result: { returncode: 0, message: 'Backup successfully restored', detail: outcome.detail ?? '' } };
    },
  });

  ctx.tasks.registerKind<BackupVerifyContext>('backup_verify', {
    async complete(trx, _task, c, outcome) {
      const d = (outcome.data ?? {}) as Partial<BackupVerified>;
      // A verify that could not run (repository locked long, node gone, cancel) says nothing.
      if (d.ok === undefined) return { result: failed(outcome) };
      const now = ctx.clock.now().toISOString();
      await trx.updateTable('backup').set({ status: d.ok ? BACKUP_OK : BACKUP_DAMAGED, status_change: now }).where('id', '=', c.backupId).execute();
      if (d.ok) return { result: { returncode: 0, message: outcome.message, detail: outcome.detail ?? '' } };
      const sink = alertOf(ctx);
      const define = await trx
        .selectFrom('backup as b')
        .leftJoin('backup_define as d', 'd.id', 'b.define_id')
        .select('d.name')
        .where('b.id', '=', c.backupId)
        .executeTakeFirst();
      const result = failed(outcome);
      const a = alerts.backupDamaged(c.vmHostname, c.diskId, c.name, define?.name ?? null);
      return { result, ...(sink ? { after: async () => sink.send(a) } : {}) };
    },
  });

  ctx.tasks.registerKind<Record<string, never>>('backup_cleanup', {
    async complete(_trx, _task, _c, outcome) {
      return { result: outcome.returncode === 0 ? { returncode: 0, message: outcome.message, detail: '' } : failed(outcome) };
    },
  });

  ctx.tasks.registerKind<BackupCheckContext>('backup_check', {
    async complete(trx, _task, c, outcome) {
      const now = ctx.clock.now().toISOString();
      const ids = c.items.map((i) => i.id);
      const d = outcome.data as Partial<BackupPresent> | undefined;
      if (outcome.returncode !== 0 || !d || !Array.isArray(d.resticIds) || !Array.isArray(d.filenames)) {
        // Nothing known: the backups are ok again, as before the delete.
        await trx.updateTable('backup').set({ status: BACKUP_OK, status_change: now }).where('id', 'in', ids).where('status', '=', BACKUP_PENDING).execute();
        return { result: failed(outcome) };
      }
      const kept = c.items.filter((i) => (i.resticId !== null ? d.resticIds!.includes(i.resticId) : d.filenames!.includes(i.filename))).map((i) => i.id);
      const gone = ids.filter((id) => !kept.includes(id));
      if (kept.length > 0) await trx.updateTable('backup').set({ status: BACKUP_OK, status_change: now }).where('id', 'in', kept).where('status', '=', BACKUP_PENDING).execute();
      if (gone.length > 0) await trx.deleteFrom('backup').where('id', 'in', gone).where('status', '=', BACKUP_PENDING).execute();
      return { result: { returncode: 0, message: 'Backups checked', detail: `kept=${kept.length}, deleted=${gone.length}` } };
    },
  });

  ctx.tasks.registerKind<BackupDeleteContext>('backup_delete', {
    async complete(trx, _task, c, outcome) {
      if (outcome.returncode !== 0) {
        // The delete may have removed some or all of its backups before it failed or was cut off
        // (an agent killed mid-forget): the rows stay pending until a check on the backup node
        // says which are still stored (the chaos run, seed 3: a row ok with its restic snapshot gone).
        return { result: failed(outcome), after: () => submitBackupCheck(ctx, c.backupIds) };
      }
      await trx.deleteFrom('backup').where('id', 'in', [...c.backupIds]).execute();
      return { result: { returncode: 0, message: c.bulk ? 'Backups successfully deleted' : 'Backup successfully deleted', detail: c.bulk ? c.detail : '' } };
    },
  });
}

// Keeps the handler type in use for readers looking for the kinds' shape.
export type { KindHandler };
