/**
 * The scheduler: a loop that wakes when a slot can be due (the next minute boundary, or the
 * earliest `next_run` if sooner), and a tick that plans, claims and starts the due slots.
 *
 * A tick (plan → execute → report):
 * 1. reads due definitions (`next_run <= now`) in pages and decides each one's slot with the pure
 *    `decideSlot` (the most recent due slot fires once; older ones are missed; `catchup: false`
 *    skips a late one);
 * 2. claims the slots atomically (slot.repository.ts): only the server whose claim succeeded acts;
 * 3. skips a slot whose definition still has an automatic snapshot in progress (no overlap);
 * 4. starts the runs; a run that finds the disk lock held waits in the background with backoff
 *    for up to `retryS`, then fails with the normal failure log and alert;
 * 5. returns a TickReport (tests and logs read it; metrics are fed as it goes).
 *
 * Loop rules: `start()`/`stop()` are symmetric; `stop()` waits for the tick in flight and ends
 * every background wait; ticks never overlap (a tick asked for during another runs after it);
 * every tick error is logged and counted, never fatal. Time is the AppContext clock: tests use a
 * manual clock and call `tick()` themselves.
 */
import type { AppContext } from '../app-context.js';
import type { DefineRow } from '../db/schema.js';
import { formatAutoSnapshotName } from '../domain/time.js';
import { sleeperOf, type Sleeper } from './clock.js';
import { decideSlot, type SlotDecision } from './slot-plan.js';
import { claimSlots, definitionsInProgress, dueDefinitions, earliestNextRun, pruneSlots, setSlotState, type ClaimRequest, type DueCursor } from './slot.repository.js';
import { RunTargets, nameKey, recordStartFailure, startRun, takenNames } from './run.js';
import { isLockBusy, retryWhileLocked, WaitAborted } from './retry.js';
import type { AutomationServices, DefineLabels } from './services.js';
import { checkStale, type StaleState } from './stale.js';

const MINUTE_MS = 60_000;
/** Woken this long after the instant it waits for, so the slot is surely due by the clock. */
const WAKE_SLACK_MS = 5;
const SLOT_HISTORY_DAYS = 7;
/** Staleness is about missed periods (a minute at the least): checking every 5 minutes is enough. */
const STALE_CHECK_MS = 5 * MINUTE_MS;
const HOUR_MS = 3_600_000;

export interface SchedulerOptions {
  /** Definitions read and claimed per transaction. */
  readonly batchSize?: number;
  /** Runs started at once within a tick. */
  readonly concurrency?: number;
}

export interface SlotRef {
  readonly defineId: number;
  readonly define: string;
  readonly vm: string;
  /** ISO instant of the slot. */
  readonly slot: string;
}

export interface TickReport {
  readonly now: Date;
  /** Runs started (a create task was queued). */
  readonly fired: Array<SlotRef & { taskId: string; name: string; late: boolean }>;
  readonly skipped: Array<SlotRef & { reason: 'overlap' | 'missed' }>;
  /** Runs waiting for their disk lock in the background. */
  readonly waiting: SlotRef[];
  /** Runs that could not start (task-log FAILURE entry and alert written). */
  readonly failed: Array<SlotRef & { detail: string }>;
  /** Definitions that could not be handled (invalid schedule, unexpected errors). */
  errors: number;
}

export class Scheduler {
  readonly #ctx: AppContext;
  readonly #s: AutomationServices;
  readonly #sleeper: Sleeper;
  readonly #batch: number;
  readonly #concurrency: number;
  #chain: Promise<unknown> = Promise.resolve();
  #loop: Promise<void> | null = null;
  #abort: AbortController | null = null;
  #lastSlotPrune = 0;
  readonly #stale: StaleState = { alerted: new Set() };

  constructor(ctx: AppContext, services: AutomationServices, opts: SchedulerOptions = {}) {
    this.#ctx = ctx;
    this.#s = services;
    this.#sleeper = sleeperOf(ctx.clock);
    this.#batch = opts.batchSize ?? 500;
    this.#concurrency = opts.concurrency ?? 8;
  }

  get running(): boolean {
    return this.#loop !== null;
  }

  /** Starts the loop; its first tick runs at once (the catch-up of slots missed while down). */
  start(): void {
    if (this.#loop) return;
    const abort = new AbortController();
    this.#abort = abort;
    this.#loop = this.#run(abort.signal);
  }

  /** Stops the loop, waits for the tick in flight, and ends every background lock wait. */
  async stop(): Promise<void> {
    if (this.#loop) {
      this.#abort!.abort();
      await this.#loop;
      this.#loop = null;
      this.#abort = null;
    }
    await this.#chain.catch(() => undefined);
    await this.#s.retries.stop();
  }

  /** One tick; a tick asked for while another runs starts after it. Errors reject (the loop logs them). */
  tick(plannedAt: number | null = null): Promise<TickReport> {
    const next = this.#chain.catch(() => undefined).then(() => this.#tick(plannedAt));
    this.#chain = next;
    return next;
  }

  /** Resolves when no run or prune is waiting for a lock. */
  idle(): Promise<void> {
    return this.#s.retries.idle();
  }

  /** Raises "definition stale" alerts for definitions that went stale since the last check. */
  checkStale(): Promise<number> {
    return checkStale(this.#ctx, this.#s, this.#stale);
  }

  async #run(signal: AbortSignal): Promise<void> {
    let planned: number | null = null;
    let lastStaleCheck = 0;
    while (!signal.aborted) {
      try {
        await this.tick(planned);
      } catch (err) {
        this.#s.observer.tickFailed();
        this.#ctx.log.error({ err }, 'scheduler tick failed');
      }
      const now = this.#ctx.clock.now().getTime();
      if (now - lastStaleCheck >= STALE_CHECK_MS) {
        lastStaleCheck = now;
        await this.checkStale().catch((err: unknown) => {
          this.#s.observer.tickFailed();
          this.#ctx.log.error({ err }, 'stale definition check failed');
        });
      }
      planned = await this.#nextWake().catch((err: unknown) => {
        this.#ctx.log.error({ err }, 'scheduler could not read the next run');
        return this.#ctx.clock.now().getTime() + MINUTE_MS;
      });
      await this.#sleeper.sleep(planned - this.#ctx.clock.now().getTime(), signal);
    }
  }

  /** The next minute boundary, or the earliest next run if sooner (but not in a busy loop). */
  async #nextWake(): Promise<number> {
    const now = this.#ctx.clock.now().getTime();
    const boundary = Math.floor(now / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
    const earliest = await earliestNextRun(this.#ctx.db);
    const due = earliest === null ? boundary : Math.max(Date.parse(earliest), now + 1000);
    return Math.min(boundary, due) + WAKE_SLACK_MS;
  }

  async #tick(plannedAt: number | null): Promise<TickReport> {
    const started = performance.now();
    const now = this.#ctx.clock.now();
    const nowIso = now.toISOString();
    const report: TickReport = { now, fired: [], skipped: [], waiting: [], failed: [], errors: 0 };
    const targets = new RunTargets(this.#ctx.db);
    let after: DueCursor | null = null;
    for (;;) {
      const due = await dueDefinitions(this.#ctx.db, nowIso, after, this.#batch);
      if (due.length === 0) break;
      const last = due[due.length - 1]!;
      after = { nextRun: last.next_run!, id: last.id };
      await this.#handleBatch(due, now, targets, report);
      if (due.length < this.#batch) break;
    }
    if (now.getTime() - this.#lastSlotPrune >= HOUR_MS) {
      this.#lastSlotPrune = now.getTime();
      await pruneSlots(this.#ctx.db, new Date(now.getTime() - SLOT_HISTORY_DAYS * 24 * HOUR_MS).toISOString());
    }
    this.#s.observer.tickDone(performance.now() - started, plannedAt === null ? null : now.getTime() - plannedAt);
    return report;
  }

  async #handleBatch(due: readonly DefineRow[], now: Date, targets: RunTargets, report: TickReport): Promise<void> {
    const nowIso = now.toISOString();
    const decisions = new Map<number, SlotDecision>();
    const reqs: ClaimRequest[] = [];
    for (const d of due) {
      try {
        const dec = decideSlot({ schedule: d.schedule, tz: d.tz, catchup: d.catchup === 1, nextRun: new Date(d.next_run!) }, now);
        decisions.set(d.id, dec);
        reqs.push({
          defineId: d.id,
          expectedNextRun: d.next_run!,
          nextRun: dec.nextRun?.toISOString() ?? null,
          slot: dec.slot.toISOString(),
          source: dec.kind === 'fire' && !dec.late ? 'cron' : 'catchup',
          state: dec.kind === 'fire' ? 'fired' : 'skipped',
          reason: dec.kind === 'skip' ? 'missed' : null,
        });
      } catch (err) {
        // A schedule the validator let through but the cron cannot run: park it, loudly.
        report.errors++;
        this.#ctx.log.error({ err, defineId: d.id, define: d.name, schedule: d.schedule, tz: d.tz }, 'definition schedule cannot be evaluated');
        reqs.push({ defineId: d.id, expectedNextRun: d.next_run!, nextRun: null, slot: null, source: 'cron', state: 'failed', reason: null });
      }
    }
    const won = await claimSlots(this.#ctx.db, reqs, nowIso);
    const mine = due.filter((d) => won.has(d.id));
    if (mine.length === 0) return;
    await targets.load(mine);

    const toFire: Array<{ def: DefineRow; slot: Date; late: boolean; labels: DefineLabels }> = [];
    for (const def of mine) {
      const dec = decisions.get(def.id)!;
      const labels = targets.labels(def);
      const ref = { defineId: def.id, define: def.name, vm: labels.vm, slot: dec.slot.toISOString() };
      const missed = dec.missed + (dec.kind === 'skip' ? 1 : 0);
      if (missed > 0) {
        this.#s.observer.slotsSkipped(labels, 'missed', missed);
        this.#ctx.log.warn({ ...ref, missed, catchup: def.catchup === 1 }, 'scheduled slots missed');
      }
      if (dec.kind === 'skip') report.skipped.push({ ...ref, reason: 'missed' });
      else toFire.push({ def, slot: dec.slot, late: dec.late, labels });
    }
    if (toFire.length === 0) return;

    const waitingSince = new Date(now.getTime() - (this.#s.retryS + 60) * 1000).toISOString();
    const busy = await definitionsInProgress(
      this.#ctx.db,
      toFire.map((f) => ({ id: f.def.id, vmUuid: f.def.vm_uuid })),
      waitingSince,
    );
    const starting: typeof toFire = [];
    for (const f of toFire) {
      if (!busy.has(f.def.id) && !this.#s.retries.has(runKey(f.def.id))) {
        starting.push(f);
        continue;
      }
      const slot = f.slot.toISOString();
      await setSlotState(this.#ctx.db, f.def.id, slot, 'skipped', 'overlap', nowIso);
      this.#s.observer.slotsSkipped(f.labels, 'overlap', 1);
      this.#ctx.log.warn({ defineId: f.def.id, define: f.def.name, vm: f.labels.vm, slot }, 'scheduled slot skipped: the previous automatic snapshot is still in progress');
      report.skipped.push({ defineId: f.def.id, define: f.def.name, vm: f.labels.vm, slot, reason: 'overlap' });
    }
    if (starting.length === 0) return;
    for (let i = 0; i < starting.length; i += 500) {
      const ids = starting.slice(i, i + 500).map((f) => f.def.id);
      await this.#ctx.db.updateTable('snapshot_define').set({ last_run: nowIso }).where('id', 'in', ids).execute();
    }
    const name = (def: DefineRow): string => formatAutoSnapshotName(def.name, now);
    const taken = await takenNames(
      this.#ctx.db,
      starting.map((f) => ({ vmUuid: f.def.vm_uuid, name: name(f.def) })),
    );
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < starting.length) {
        const f = starting[next++]!;
        const n = name(f.def);
        try {
          await this.#startScheduled(f.def, f.slot, f.late, f.labels, targets, now, report, n, taken.has(nameKey(f.def.vm_uuid, f.def.disk_real_id, n)));
        } catch (err) {
          report.errors++;
          this.#ctx.log.error({ err, defineId: f.def.id, define: f.def.name }, 'scheduled run failed unexpectedly');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, starting.length) }, worker));
  }

  async #startScheduled(
    def: DefineRow,
    slot: Date,
    late: boolean,
    labels: DefineLabels,
    targets: RunTargets,
    now: Date,
    report: TickReport,
    name: string,
    nameTaken: boolean,
  ): Promise<void> {
    const slotIso = slot.toISOString();
    const ref: SlotRef = { defineId: def.id, define: def.name, vm: labels.vm, slot: slotIso };
    try {
      const { caller, target } = targets.target(def);
      const taskId = await startRun(this.#ctx, caller, target, def, name, nameTaken);
      this.#s.observer.slotFired(labels, now.getTime() - slot.getTime());
      report.fired.push({ ...ref, taskId, name, late });
    } catch (err) {
      if (isLockBusy(err)) {
        await setSlotState(this.#ctx.db, def.id, slotIso, 'waiting', 'disk lock held', now.toISOString());
        report.waiting.push(ref);
        this.#ctx.log.info({ ...ref }, 'scheduled run waits for the disk lock');
        this.#s.retries.start(runKey(def.id), (signal) => this.#waitAndRun(def.id, slot, now.getTime() + this.#s.retryS * 1000, signal));
        return;
      }
      const detail = await recordStartFailure(
        this.#ctx,
        this.#s,
        { def, vm: targets.vm(def), diskArrayId: targets.diskArrayId(def), name, labels },
        err,
      );
      await setSlotState(this.#ctx.db, def.id, slotIso, 'failed', detail, now.toISOString());
      report.failed.push({ ...ref, detail });
    }
  }

  /** The background part of "waiting instead of failing": re-read, re-check and retry until the deadline. */
  async #waitAndRun(defineId: number, slot: Date, deadline: number, signal: AbortSignal): Promise<void> {
    const slotIso = slot.toISOString();
    const clock = this.#ctx.clock;
    let last: { def: DefineRow; targets: RunTargets; name: string } | null = null;
    try {
      await retryWhileLocked(
        async () => {
          const def = await this.#ctx.db.selectFrom('snapshot_define').selectAll().where('id', '=', defineId).executeTakeFirst();
          if (!def || def.active !== 1) throw new Abandoned(def ? 'paused' : 'deleted');
          const targets = new RunTargets(this.#ctx.db);
          await targets.load([def]);
          const now = clock.now();
          const name = formatAutoSnapshotName(def.name, now);
          last = { def, targets, name };
          const { caller, target } = targets.target(def);
          await startRun(this.#ctx, caller, target, def, name);
          this.#s.observer.slotFired(targets.labels(def), now.getTime() - slot.getTime());
        },
        { clock, sleeper: this.#sleeper, deadline, signal },
      );
      await setSlotState(this.#ctx.db, defineId, slotIso, 'fired', null, clock.now().toISOString());
    } catch (err) {
      const nowIso = clock.now().toISOString();
      if (err instanceof Abandoned) {
        await setSlotState(this.#ctx.db, defineId, slotIso, 'skipped', err.message, nowIso);
        return;
      }
      if (err instanceof WaitAborted) {
        // The `waiting` slot row expires; no failure is reported for a shutdown.
        this.#ctx.log.warn({ defineId, slot: slotIso }, err.message);
        return;
      }
      const l = last as { def: DefineRow; targets: RunTargets; name: string } | null;
      if (!l) {
        this.#ctx.log.error({ err, defineId, slot: slotIso }, 'scheduled run failed while waiting for the disk lock');
        await setSlotState(this.#ctx.db, defineId, slotIso, 'failed', err instanceof Error ? err.message : String(err), nowIso);
        return;
      }
      const detail = await recordStartFailure(
        this.#ctx,
        this.#s,
        { def: l.def, vm: l.targets.vm(l.def), diskArrayId: l.targets.diskArrayId(l.def), name: l.name, labels: l.targets.labels(l.def) },
        err,
      );
      await setSlotState(this.#ctx.db, defineId, slotIso, 'failed', detail, nowIso);
    }
  }
}

/** A waiting run whose definition was paused or deleted meanwhile: it does not run. */
class Abandoned extends Error {}

function runKey(defineId: number): string {
  return `run:${defineId}`;
}
