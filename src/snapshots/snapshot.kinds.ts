/**
 * Completion of snapshot tasks: what each outcome does to the rows (spec 7A.1), in the one
 * completion transaction of TaskService.complete. Failure, cancel and crash repair take the same
 * failure branch.
 */
import type { AppContext } from '../app-context.js';
import type { CreateData, DamageData, ListResult } from '../agent/payloads.js';
import { clearDamage, setDamageByPath } from '../vms/disk.damage.js';
import type { KindHandler, TaskOutcome, TaskResult } from '../tasks/task.types.js';
import { SNAP_OK, deleteSnapshots, setStatus } from './snapshot.repository.js';
import type { CreateContext, DeleteContext } from './snapshot.service.js';
import { revertNotready, type RollbackContext } from './snapshot.rollback.js';
import { applySync, syncResultMessage, type SyncContext } from './snapshot.sync.js';
import { createDiscards, recordDiscards } from './snapshot.discard.js';

function failed(outcome: TaskOutcome): TaskResult {
  return {
    returncode: outcome.returncode,
    message: outcome.message,
    detail: outcome.detail ?? `Got bad return code (${outcome.returncode}). Error: ${outcome.message}`,
  };
}

/**
 * `runRetention`: what runs after an automatic snapshot succeeded (the scheduler's retention prune,
 * src/scheduler/retention.ts), given the definition and the create task's id.
 */
export function registerSnapshotKinds(ctx: AppContext, runRetention: (ctx: AppContext, defineId: number, createTaskId: string) => Promise<void>): void {
  ctx.tasks.registerKind<CreateContext>('snapshot_create', {
    async complete(trx, task, c, outcome) {
      const now = ctx.clock.now().toISOString();
      if (outcome.returncode !== 0) {
        await deleteSnapshots(trx, c.snapshotIds);
        // A create that had started may have left snapshots on storage (cut off by a crash, or a
        // driver call cut off mid-way): the disk's next sync destroys them (snapshot.discard.ts).
        // A cancel's agent undid its own, the one in progress too (agent.ts).
        if (task.started !== null && outcome.cancelled !== true) await recordDiscards(trx, createDiscards(task), now);
        // The agent refused a damaged image: the disk is flagged, later creates get 417.
        const damage = (outcome.data as Partial<DamageData> | undefined)?.damage ?? {};
        for (const [path, why] of Object.entries(damage)) await setDamageByPath(trx, c.vmUuid, path, why);
        return { result: failed(outcome) };
      }
      const data = (outcome.data ?? {}) as Partial<CreateData>;
      let message = outcome.message;
      // Only a freeze the agent confirms makes a snapshot application-consistent.
      const freezeFailed = c.fsfreeze && c.freezeAsked && data.frozen !== true;
      if (freezeFailed) message += ' (filesystem freeze failed)';
      for (const [i, id] of c.snapshotIds.entries()) {
        await trx
          .updateTable('snapshot')
          .set({
            status: SNAP_OK,
            status_change: now,
            changed: now,
            size: data.items?.[i]?.size ?? null,
            ...(freezeFailed ? { fsfreeze: 0 } : {}),
          })
          .where('id', '=', id)
          .execute();
      }
      // A snapshot of every disk names each disk in its result.
      const detail = c.snapshotIds.length > 1 ? `disk_ids=${c.diskArrayIds.join(',')}` : (outcome.detail ?? '');
      const result: TaskResult = { returncode: 0, message, detail };
      if (c.defineId === null) return { result };
      const defineId = c.defineId;
      // The create's own id names a prune failure in the task log (as Danube logs it under the beat's task).
      return { result, after: () => runRetention(ctx, defineId, task.id) };
    },
  });

  ctx.tasks.registerKind<DeleteContext>('snapshot_delete', {
    async complete(trx, _task, c, outcome) {
      if (outcome.returncode !== 0) {
        await setStatus(trx, c.snapshotIds, SNAP_OK, ctx.clock.now().toISOString());
        return { result: failed(outcome) };
      }
      await deleteSnapshots(trx, c.snapshotIds);
      return {
        result: {
          returncode: 0,
          message: c.bulk ? 'Snapshots successfully deleted' : 'Snapshot successfully deleted',
          detail: c.bulk ? c.detail : '',
        },
      };
    },
  });

  ctx.tasks.registerKind<RollbackContext>('snapshot_rollback', {
    async complete(trx, _task, c, outcome) {
      const now = ctx.clock.now().toISOString();
      await setStatus(trx, [c.snapshotId], SNAP_OK, now);
      for (const uuid of new Set([c.targetVm, c.sourceVm])) {
        const vm = await trx.selectFrom('vm').select('status').where('uuid', '=', uuid).executeTakeFirst();
        if (vm) await trx.updateTable('vm').set({ status: revertNotready(vm.status), changed: now }).where('uuid', '=', uuid).execute();
      }
      if (outcome.returncode !== 0) return { result: failed(outcome) };
      // The disk now holds the snapshot's content, whole: a damaged flag no longer applies.
      await clearDamage(trx, c.targetVm, c.targetDiskRealId);
      // Rows of snapshots that storage destroyed go too; on keep-newer drivers they stay.
      if (c.force && !c.keepsNewer) {
        const snap = await trx.selectFrom('snapshot').select(['disk_real_id']).where('id', '=', c.snapshotId).executeTakeFirst();
        let q = trx.deleteFrom('snapshot').where('vm_uuid', '=', c.targetVm).where('disk_real_id', '=', c.targetDiskRealId);
        const sameDisk = c.sameDisk ?? (c as { sameVm?: boolean }).sameVm;
        if (sameDisk && snap) q = q.where('id', '>', c.snapshotId);
        await q.execute();
      }
      return { result: { returncode: 0, message: 'Snapshot successfully restored', detail: outcome.detail ?? '' } };
    },
  });

  const syncHandler: KindHandler<SyncContext> = {
    async complete(trx, task, c, outcome) {
      if (outcome.returncode !== 0) return { result: failed(outcome) };
      const { lost, found } = await applySync(trx, task, c, (outcome.data ?? {}) as Partial<ListResult>, ctx.clock.now().toISOString());
      // Danube's success result for sync has no `detail` key.
      return { result: { returncode: 0, message: syncResultMessage(lost, found) } };
    },
  };
  ctx.tasks.registerKind<SyncContext>('snapshot_sync', syncHandler);
  ctx.tasks.registerKind<SyncContext>('snapshot_node_sync', syncHandler);
}
