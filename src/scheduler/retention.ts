/**
 * Retention pruning after a successful automatic snapshot (spec 8.4, plus esnap's rules): the
 * pure plan of src/domain/retention.ts (the same one the preview shows) decides; what it names is
 * deleted in one bulk task as the system user, task type `a`.
 *
 * A held disk lock (a manual snapshot or a rollback in progress) makes the prune wait with backoff
 * for up to ESNAP_SCHEDULE_RETRY_S, re-planning at each attempt, in the background: the task
 * completion that triggered it is not held up. Any other failure to start, or the lock still held
 * at the deadline, sends Danube's alert and writes its FAILURE entry under the create task's id.
 * The snapshot create's completion (src/snapshots/snapshot.kinds.ts) calls runRetention through the
 * hook it is registered with, so snapshots do not depend on the scheduler.
 */
import { randomUUID } from 'node:crypto';
import type { AppContext } from '../app-context.js';
import { SYSTEM_USER_ID, SYSTEM_USERNAME } from '../domain/system.js';
import type { VmRow } from '../db/schema.js';
import { planRetention } from '../domain/retention.js';
import { makeTaskId, parseTaskId } from '../domain/taskid.js';
import { writeLog } from '../tasks/task-log.js';
import { vmDisks } from '../vms/vm.lookup.js';
import { alerts } from '../alerts/alert.messages.js';
import { sleeperOf } from '../lib/clock.js';
import { isLockBusy, retryWhileLocked, WaitAborted } from './retry.js';
import { describeStartError } from './run.js';
import { bulkDelete } from '../snapshots/snapshot.service.js';
import { loadStorageAndNode, logObject, systemCaller } from '../snapshots/snapshot.context.js';

export const DELETE_LOG_MSG = "Delete snapshots of server's disk";

/** What the last prune attempt was about, for its failure report. */
interface PruneAttempt {
  vm: VmRow;
  diskArrayId: number;
  define: string;
  snapnames: string[];
}

/** The definition's snapshots on its disk, in the plan's input shape. */
export async function retentionInput(ctx: AppContext, defineId: number, diskRealId: number) {
  const rows = await ctx.db
    .selectFrom('snapshot')
    .select(['id', 'name', 'status', 'pinned', 'created'])
    .where('define_id', '=', defineId)
    .where('disk_real_id', '=', diskRealId)
    .orderBy('id')
    .execute();
  return rows.map((r) => ({ id: r.id, name: r.name, status: r.status, pinned: r.pinned === 1, created: r.created }));
}

/** Plans and, when anything is due, submits the bulk delete. Throws what the bulk delete throws. */
async function pruneOnce(ctx: AppContext, defineId: number, attempt: { last: PruneAttempt | null }): Promise<void> {
  const def = await ctx.db.selectFrom('snapshot_define').selectAll().where('id', '=', defineId).executeTakeFirst();
  if (!def) return;
  const snapshots = await retentionInput(ctx, def.id, def.disk_real_id);
  const plan = planRetention(
    snapshots,
    { retention: def.retention, retentionDays: def.retention_days, lastRunFailed: def.last_error !== null },
    ctx.clock.now(),
  );
  if (plan.destroy.length === 0) return;
  const vm = await ctx.db.selectFrom('vm').selectAll().where('uuid', '=', def.vm_uuid).executeTakeFirst();
  if (!vm) return;
  const disks = await vmDisks(ctx.db, vm.uuid);
  const idx = disks.findIndex((d) => d.real_id === def.disk_real_id);
  if (idx < 0) return;
  const disk = disks[idx]!;
  const snapnames = plan.destroy.map((s) => s.name);
  attempt.last = { vm, diskArrayId: idx + 1, define: def.name, snapnames };
  const { storage, node } = await loadStorageAndNode(ctx.db, disk);
  const caller = await systemCaller(ctx, vm.dc_id);
  await bulkDelete(ctx, caller, { vm, disks, disk, diskArrayId: idx + 1, storage, node }, snapnames, { type: 'a' });
}

/**
 * Runs retention for a definition after its automatic snapshot succeeded. Never throws: failures
 * are reported as Danube does. `createTaskId` names the create task for the failure entry; when
 * absent, the definition's latest successful create is looked up.
 */
export async function runRetention(ctx: AppContext, defineId: number, createTaskId?: string): Promise<void> {
  const services = ctx.automation;
  const attempt: { last: PruneAttempt | null } = { last: null };
  try {
    await pruneOnce(ctx, defineId, attempt);
  } catch (err) {
    if (isLockBusy(err)) {
      const key = `prune:${defineId}`;
      // A prune of this definition already waiting will re-plan and cover this one too.
      if (services.retries.has(key)) return;
      const deadline = ctx.clock.now().getTime() + services.retryS * 1000;
      ctx.log.info({ defineId, snapnames: attempt.last?.snapnames }, 'retention waits for the disk lock');
      services.retries.start(key, async (signal) => {
        try {
          await retryWhileLocked(() => pruneOnce(ctx, defineId, attempt), { clock: ctx.clock, sleeper: sleeperOf(ctx.clock), deadline, signal });
        } catch (e) {
          if (e instanceof WaitAborted) ctx.log.warn({ defineId }, e.message);
          else await reportFailure(ctx, attempt.last, e, createTaskId);
        }
      });
      return;
    }
    await reportFailure(ctx, attempt.last, err, createTaskId);
  }
}

async function reportFailure(ctx: AppContext, a: PruneAttempt | null, err: unknown, createTaskId: string | undefined): Promise<void> {
  if (a === null) {
    ctx.log.error({ err }, 'retention failed before it could plan');
    return;
  }
  try {
    const { detail } = describeStartError(err);
    const services = ctx.automation;
    services.alerts.send(alerts.retentionFailed(a.vm.hostname, a.diskArrayId, a.define, a.snapnames));
    const taskId =
      createTaskId ??
      (await latestCreateTask(ctx, a.vm.uuid, a.define)) ??
      makeTaskId({ userId: SYSTEM_USER_ID, type: 'a', ownerId: a.vm.owner_id, dcBound: true, dcId: a.vm.dc_id }, randomUUID());
    await writeLog(ctx.db, {
      time: ctx.clock.now().toISOString(),
      taskId,
      taskType: parseTaskId(taskId)?.type ?? 'a',
      status: 'FAILURE',
      userId: SYSTEM_USER_ID,
      username: SYSTEM_USERNAME,
      ownerId: a.vm.owner_id,
      dcId: a.vm.dc_id,
      msg: DELETE_LOG_MSG,
      detail: `hostname=${a.vm.hostname}, snapnames=${a.snapnames.join(',')}, disk_id=${a.diskArrayId}, Error: ${detail}`,
      object: logObject(a.vm),
    });
  } catch (e) {
    ctx.log.error({ err: e, cause: err }, 'could not report a retention failure');
  }
}

/** The id of the definition's most recent successful automatic create on this VM. */
async function latestCreateTask(ctx: AppContext, vmUuid: string, define: string): Promise<string | null> {
  const rows = await ctx.db
    .selectFrom('task')
    .select(['id', 'context'])
    .where('vm_uuid', '=', vmUuid)
    .where('kind', '=', 'snapshot_create')
    .where('type', '=', 'a')
    .where('state', '=', 'SUCCESS')
    .orderBy('finished', 'desc')
    .limit(20)
    .execute();
  for (const r of rows) {
    const name = (JSON.parse(r.context) as { name?: unknown }).name;
    if (typeof name === 'string' && name.startsWith(`${define}-`)) return r.id;
  }
  return null;
}
