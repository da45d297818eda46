/**
 * The servers' side of the results queue (`esnap.results`): any server may take any agent's
 * message. `started` records PENDING → STARTED (a no-op when the task ended already: a `finished`
 * taken first by another server, or a deadline failure). `finished` goes through the one
 * completion path, TaskService.complete, which ignores a task that has already ended.
 *
 * Disks are re-synced against storage when the storage state is uncertain: after an interrupted
 * job (the agent died while running it), and when a successful result arrives for a task that had
 * already been failed (its agent went silent past the deadline but did finish), since the failure
 * cleanup then reverted rows whose storage change did happen. The re-sync is the snapshots' one
 * (src/snapshots/snapshot.sync.ts, `resyncAfterRepair`), handed in by the runtime.
 */
import type { AppContext } from '../app-context.js';
import type { ResultMessage } from '../agent/cluster.messages.js';
import { RESULTS_QUEUE, type PgBossQueue } from '../queue/pgboss.queue.js';
import { isFinalTaskState } from '../domain/task-state.js';
import type { TaskRow } from '../db/schema.js';

/** Re-syncs the disks of tasks whose storage state is uncertain. */
export type Resync = (ctx: AppContext, tasks: readonly TaskRow[]) => Promise<void>;

export async function consumeResults(ctx: AppContext, queue: PgBossQueue, resync: Resync, concurrency = 8): Promise<void> {
  // A result is recorded in the task row; its job is deleted once applied.
  await queue.consume(RESULTS_QUEUE, (data) => applyResult(ctx, data as ResultMessage, resync), { concurrency, discard: true });
}

export async function applyResult(ctx: AppContext, m: ResultMessage, resync: Resync): Promise<void> {
  if (m.type === 'started') {
    await ctx.tasks.markStarted(m.taskId);
    return;
  }
  const before = await ctx.tasks.get(m.taskId);
  if (!before) return;
  const late = isFinalTaskState(before.state);
  await ctx.tasks.complete(m.taskId, m.outcome);
  if (m.interrupted || (late && before.state !== 'SUCCESS' && m.outcome.returncode === 0)) {
    ctx.log.warn({ taskId: m.taskId, node: m.node, interrupted: m.interrupted ?? false }, 're-syncing disks after an uncertain task end');
    await resync(ctx, [before]);
  }
}
