/**
 * Completion of the registry's node tasks, inside TaskService's one completion transaction.
 * Storage is changed first (by the agent), rows follow only on success; a failure, a cancel or a
 * crash leaves every row as it was, so the API never shows a disk whose image does not exist
 * (create) or hides one that still does (delete). A retried delete finishes the job: deleting an
 * image that is already gone succeeds.
 */
import type { AppContext } from '../app-context.js';
import type { KindHandler, TaskOutcome, TaskResult } from '../tasks/task.types.js';
import * as repo from './vm.repository.js';

export interface DiskCreateContext {
  readonly vmUuid: string;
  readonly realId: number;
  readonly storageId: number;
  readonly path: string;
  readonly sizeMb: number;
}

export interface DiskDeleteContext {
  readonly vmUuid: string;
  readonly realId: number;
}

export interface VmDeleteContext {
  readonly vmUuid: string;
}

function resultOf(outcome: TaskOutcome, message?: string): TaskResult {
  return {
    returncode: outcome.returncode,
    message: outcome.returncode === 0 && message !== undefined ? message : outcome.message,
    detail: outcome.detail ?? '',
  };
}

function diskCreate(ctx: AppContext): KindHandler<DiskCreateContext> {
  return {
    async complete(trx, _task, c, outcome) {
      // The VM cannot be gone: its delete needs the define lock this task holds.
      if (outcome.returncode === 0 && (await repo.vmByUuid(trx, c.vmUuid))) {
        await repo.insertDisk(trx, {
          vm_uuid: c.vmUuid,
          real_id: c.realId,
          storage_id: c.storageId,
          path: c.path,
          size_mb: c.sizeMb,
          created: ctx.clock.now().toISOString(),
        });
      }
      return { result: resultOf(outcome) };
    },
  };
}

const diskDelete: KindHandler<DiskDeleteContext> = {
  async complete(trx, _task, c, outcome) {
    if (outcome.returncode === 0) await repo.deleteDiskRows(trx, c.vmUuid, c.realId);
    return { result: resultOf(outcome) };
  },
};

const vmDelete: KindHandler<VmDeleteContext> = {
  async complete(trx, _task, c, outcome) {
    if (outcome.returncode === 0) await repo.deleteVmRows(trx, c.vmUuid);
    return { result: resultOf(outcome, 'Server definition successfully deleted') };
  },
};

export function registerVmKinds(ctx: AppContext): void {
  ctx.tasks.registerKind('disk_create', diskCreate(ctx));
  ctx.tasks.registerKind('disk_delete', diskDelete);
  ctx.tasks.registerKind('vm_delete', vmDelete);
}
