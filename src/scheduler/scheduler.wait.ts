/**
 * The background part of "waiting instead of failing" (retry.ts) for a scheduled run: a claimed
 * run whose create task found the disk lock held has its slot written `waiting` in the claim's
 * commit; the scheduler then starts this in its RetryPool, and it retries with backoff until the
 * deadline, then settles the slot as `fired`, `skipped` or `failed`.
 *
 * Each attempt re-reads the definition and its targets: the wait can last minutes, during which
 * the definition may be paused or deleted (the run is then abandoned, not failed). The snapshot
 * is named for the attempt that makes it, not for the slot.
 */
import type { AppContext } from '../app-context.js';
import type { DefineRow } from '../db/schema.js';
import { formatAutoSnapshotName } from '../domain/time.js';
import { StorageFullError } from '../snapshots/capacity.js';
import { sleeperOf } from '../lib/clock.js';
import { retryWhileLocked, WaitAborted } from './retry.js';
import { RunTargets, recordStartFailure, startRun } from './run.js';
import type { AutomationServices } from './services.js';
import { setSlotState } from './slot.repository.js';

/** A claimed run waiting for its disk lock. */
export interface WaitingRun {
  readonly defineId: number;
  readonly slot: Date;
  /** Epoch ms after which a busy lock is final. */
  readonly deadline: number;
}

/** Re-reads, re-checks and retries `run` until the deadline, then settles its slot. */
export async function waitAndRun(ctx: AppContext, services: AutomationServices, run: WaitingRun, signal: AbortSignal): Promise<void> {
  const { defineId, slot, deadline } = run;
  const slotIso = slot.toISOString();
  const clock = ctx.clock;
  let last: { def: DefineRow; targets: RunTargets; name: string } | null = null;
  try {
    await retryWhileLocked(
      async () => {
        const def = await ctx.db.selectFrom('snapshot_define').selectAll().where('id', '=', defineId).executeTakeFirst();
        if (!def || def.active !== 1) throw new Abandoned(def ? 'paused' : 'deleted');
        const targets = new RunTargets(ctx.db);
        await targets.load([def]);
        const now = clock.now();
        const name = formatAutoSnapshotName(def.name, now);
        last = { def, targets, name };
        const { caller, target } = targets.target(def);
        await startRun(ctx, caller, target, def, name);
        services.observer.slotFired(targets.labels(def), now.getTime() - slot.getTime());
      },
      { clock, sleeper: sleeperOf(clock), deadline, signal },
    );
    await setSlotState(ctx.db, defineId, slotIso, 'fired', null, clock.now().toISOString());
  } catch (err) {
    const nowIso = clock.now().toISOString();
    if (err instanceof Abandoned) {
      await setSlotState(ctx.db, defineId, slotIso, 'skipped', err.message, nowIso);
      return;
    }
    if (err instanceof WaitAborted) {
      // The `waiting` slot row expires; no failure is reported for a shutdown.
      ctx.log.warn({ defineId, slot: slotIso }, err.message);
      return;
    }
    const l = last as { def: DefineRow; targets: RunTargets; name: string } | null;
    if (!l) {
      ctx.log.error({ err, defineId, slot: slotIso }, 'scheduled run failed while waiting for the disk lock');
      await setSlotState(ctx.db, defineId, slotIso, 'failed', err instanceof Error ? err.message : String(err), nowIso);
      return;
    }
    const detail = await recordStartFailure(
      ctx,
      services,
      { def: l.def, vm: l.targets.vm(l.def), diskArrayId: l.targets.diskArrayId(l.def), name: l.name, labels: l.targets.labels(l.def) },
      err,
    );
    await setSlotState(ctx.db, defineId, slotIso, err instanceof StorageFullError ? 'skipped' : 'failed', detail, nowIso);
  }
}

/** A waiting run whose definition was paused or deleted meanwhile: it does not run. */
class Abandoned extends Error {}
