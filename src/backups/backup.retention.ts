/**
 * Retention of a backup definition: after each successful backup, the oldest OK backups beyond
 * the definition's `retention` are deleted through one bulk delete task (Danube's _delete_oldest),
 * as the system user. A failure to start it is logged; the next backup tries again.
 */
import type { AppContext } from '../app-context.js';
import { systemCaller } from '../snapshots/snapshot.context.js';
import { BACKUP_OK } from './backup.schema.js';
import { deleteBackupRows } from './backup.service.js';

export async function runBackupRetention(ctx: AppContext, defineId: number, createTaskId?: string): Promise<void> {
  try {
    const define = await ctx.db.selectFrom('backup_define').selectAll().where('id', '=', defineId).executeTakeFirst();
    if (!define || define.retention <= 0) return;
    const rows = await ctx.db
      .selectFrom('backup')
      .select(['id'])
      .where('define_id', '=', defineId)
      .where('status', '=', BACKUP_OK)
      .orderBy('id', 'desc')
      .execute();
    const old = rows.slice(define.retention).map((r) => r.id);
    if (old.length === 0) return;
    const vm = await ctx.db.selectFrom('vm').select(['dc_id']).where('uuid', '=', define.vm_uuid).executeTakeFirst();
    if (!vm) return;
    await deleteBackupRows(ctx, await systemCaller(ctx, vm.dc_id), old);
  } catch (err) {
    ctx.log.error({ err, defineId, createTaskId }, 'backup retention failed to start');
  }
}
