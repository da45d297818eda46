/**
 * The scheduler: a loop that wakes when a slot can be due (the next minute boundary, or the
 * earliest `next_run` if sooner), and a tick that plans, claims and starts the due slots.
 *
 * A tick (plan → execute → report):
 * 1. reads due definitions (`next_run <= now`) in pages and decides each one's slot with the pure
 *    `decideSlot` (the most recent due slot fires once; older ones are missed; `catchup: false`
 *    skips a late one);
 * 2. plans each run: skipped when its definition still has an automatic snapshot in progress (no
 *    overlap), failed when a check refuses it, else the create task it will submit;
 * 3. in one transaction, claims the slots (slot.repository.ts: only the server whose claim
 *    succeeds acts) and submits the claimed runs' tasks (TaskService.submitManyIn), so a slot row
 *    and its task commit together or not at all; the queue messages follow the commit. On
 *    PostgreSQL steps 1–3 of a page share that transaction: the page is read with SKIP LOCKED, so
 *    servers ticking one slot split it (readPlanWrite in src/db/capabilities.ts);
 * 4. reports: a run that found the disk lock held waits in the background with backoff for up to
 *    `retryS` (scheduler.wait.ts), then fails with the normal failure log and alert; a run that
 *    failed its checks gets its failure entry and alert;
 * 5. returns a TickReport (tests and logs read it; metrics are fed as it goes).
 *
 * Loop rules: `start()`/`stop()` are symmetric; `stop()` waits for the tick in flight and ends
 * every background wait; ticks never overlap (a tick asked for during another runs after it);
 * every tick error is logged and counted, never fatal. Time is the AppContext clock: tests use a
 * manual clock and call `tick()` themselves.
 */
import type { AppContext } from '../app-context.js';
import type { Transaction } from 'kysely';
import type { Database, DefineRow } from '../db/schema.js';
import { formatAutoSnapshotName } from '../domain/time.js';
import { sleeperOf, type Sleeper } from '../lib/clock.js';
import { decideSlot, type SlotDecision } from './slot-plan.js';
import { claimSlotsIn, definitionsInProgress, dueDefinitions, earliestNextRun, pruneSlots, setSlotState, type ClaimRequest, type DueCursor } from './slot.repository.js';
import { RunTargets, describeStartError, planRun, recordStartFailure } from './run.js';
import type { SubmitResult, TaskSpec } from '../tasks/task.types.js';
import type { CreateContext } from '../snapshots/snapshot.service.js';
import { isLockBusy } from './retry.js';
import type { AutomationServices } from './services.js';
import { checkStale, type StaleState } from './stale.js';
import { StorageFullError } from '../snapshots/capacity.js';
import { waitAndRun } from './scheduler.wait.js';
import { dialectOf, needsRowLocks, readPlanWrite } from '../db/capabilities.js';

const MINUTE_MS = 60_000;
/** Woken this long after the instant it waits for, so the slot is surely due by the clock. */
const WAKE_SLACK_MS = 5;
/** Days of slot history kept (the backup scheduler keeps its own as long). */
export const SLOT_HISTORY_DAYS = 7;
/** Staleness is about missed periods (a minute at the least): checking every 5 minutes is enough. */
const STALE_CHECK_MS = 5 * MINUTE_MS;
const HOUR_MS = 3_600_000;
/** Pages of due definitions in flight at once on PostgreSQL (see #tick). */
const PIPELINE = 2;

export interface SchedulerOptions {
  /** Definitions read and claimed per transaction (default 2,000 on PostgreSQL, 500 on SQLite). */
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
  readonly skipped: Array<SlotRef & { reason: 'overlap' | 'missed' | 'capacity' }>;
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
    // PostgreSQL takes a batch's rows in a few statements whatever its size (src/db/bulk.ts), so
    // bigger batches mean fewer round trips; SQLite's single writer is held for the whole batch.
    this.#batch = opts.batchSize ?? (dialectOf(ctx.db) === 'postgres' ? 2000 : 500);
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
    const report: TickReport = { now, fired: [], skipped: [], waiting: [], failed: [], errors: 0 };
    const targets = new RunTargets(this.#ctx.db);
    // Where transactions interleave (PostgreSQL), the next page is read as soon as this one's rows
    // are known, so that one page's plan (the process's CPU) runs beside the previous page's
    // writes and commit (the database's), and each page's queue messages go out beside the next
    // page: a 20,000-definition tick was a strict alternation, the process idle 64 % of it
    // (issue 17). At most PIPELINE pages are in flight, each in its own transaction: pages are
    // disjoint ranges of the (next_run, id) keyset, and each claim is still the compare-and-set
    // plus the slot's primary key. SQLite (one writer) takes the pages one after the other.
    const depth = needsRowLocks(this.#ctx.db) ? PIPELINE : 1;
    const inFlight: Array<Promise<void>> = [];
    let failure: { err: unknown } | null = null;
    let after: DueCursor | null = null;
    for (;;) {
      const page = this.#handleBatch(after, now, targets, report);
      const done = page.done.catch((err: unknown) => {
        failure ??= { err };
      });
      inFlight.push(done);
      let due: readonly DefineRow[];
      try {
        due = await page.rows;
      } catch {
        break; // the page's own failure is in `failure`
      }
      if (due.length === 0 || due.length < this.#batch) break;
      const last = due[due.length - 1]!;
      after = { nextRun: last.next_run!, id: last.id };
      while (inFlight.length >= depth) await inFlight.shift();
      if (failure) break;
    }
    await Promise.all(inFlight);
    if (failure) throw (failure as { err: unknown }).err;
    if (now.getTime() - this.#lastSlotPrune >= HOUR_MS) {
      this.#lastSlotPrune = now.getTime();
      await pruneSlots(this.#ctx.db, new Date(now.getTime() - SLOT_HISTORY_DAYS * 24 * HOUR_MS).toISOString());
    }
    this.#s.observer.tickDone(performance.now() - started, plannedAt === null ? null : now.getTime() - plannedAt);
    return report;
  }

  /**
   * One page of due definitions after `after`: read, planned, claimed and started (readPlanWrite:
   * on PostgreSQL the page is read with SKIP LOCKED inside the claim's transaction, so servers
   * ticking the same slot take different definitions). Returns the page.
   */
  #handleBatch(after: DueCursor | null, now: Date, targets: RunTargets, report: TickReport): { rows: Promise<readonly DefineRow[]>; done: Promise<void> } {
    const nowIso = now.toISOString();
    let readDone!: (rows: readonly DefineRow[]) => void;
    const rows = new Promise<readonly DefineRow[]>((resolve) => {
      readDone = resolve;
    });
    const done = (async () => {
      const r = await readPlanWrite(this.#ctx.db, {
        read: async (q) => {
          const due = await dueDefinitions(q, nowIso, after, this.#batch);
          readDone(due);
          return due;
        },
        plan: async (due) => (due.length === 0 ? null : this.#planBatch(due, now, targets, report)),
        write: (trx, p) => this.#claimAndStart(trx, p, nowIso),
      });
      if (r.plan && r.written) await this.#afterCommit(r.rows, r.plan, r.written, targets, now, report);
    })();
    // A page that fails before its rows are read ends the tick's walk with that failure.
    return { rows: Promise.race([rows, done.then(() => rows)]), done };
  }

  /** Each due definition's slot decision, claim request and run plan (no writes). */
  async #planBatch(due: readonly DefineRow[], now: Date, targets: RunTargets, report: TickReport): Promise<BatchPlan> {
    const decisions = new Map<number, SlotDecision>();
    const reqs = new Map<number, ClaimRequest>();
    // Definitions due together mostly share schedule and next run (a daily 01:00 on many VMs);
    // the decision is pure, so it is computed once for each such group.
    const decided = new Map<string, SlotDecision>();
    for (const d of due) {
      try {
        const key = `${d.schedule}\n${d.tz}\n${d.catchup}\n${d.next_run}`;
        let dec = decided.get(key);
        if (!dec) {
          dec = decideSlot({ schedule: d.schedule, tz: d.tz, catchup: d.catchup === 1, nextRun: new Date(d.next_run!) }, now);
          decided.set(key, dec);
        }
        decisions.set(d.id, dec);
        reqs.set(d.id, {
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
        reqs.set(d.id, { defineId: d.id, expectedNextRun: d.next_run!, nextRun: null, slot: null, source: 'cron', state: 'failed', reason: null });
      }
    }
    await targets.load(due);
    const fires = due.filter((d) => decisions.get(d.id)?.kind === 'fire');
    // Every run is planned (overlap, checks, its task) before the claim writes, and its reads go
    // through other connections than the claim's transaction: on SQLite they run before that
    // transaction opens (one connection), on PostgreSQL beside it (readPlanWrite).
    const plans = await this.#planRuns(fires, now, targets);
    // A fired slot whose run is not skipped as an overlap sets `last_run` with its claim.
    for (const [id, p] of plans) {
      if (p.kind === 'overlap') reqs.set(id, { ...reqs.get(id)!, state: 'skipped', reason: 'overlap' });
      else if (p.kind === 'fail') reqs.set(id, { ...reqs.get(id)!, state: 'failed', reason: describeStartError(p.err).detail, run: true });
      else reqs.set(id, { ...reqs.get(id)!, run: true });
    }

    return { decisions, reqs, fires, plans };
  }

  /**
   * Claim and start together: a slot row and its task commit together or not at all, and the
   * database's claim (slot.repository.ts) decides which server does both.
   */
  async #claimAndStart(trx: Transaction<Database>, p: BatchPlan, nowIso: string): Promise<Claimed> {
    const { decisions, reqs, fires, plans } = p;
    // The page's rows are this transaction's on PostgreSQL (read with SKIP LOCKED, readPlanWrite).
    const won = await claimSlotsIn(trx, [...reqs.values()], nowIso, { locked: needsRowLocks(trx) });
    const starting = fires.filter((d) => won.has(d.id) && plans.get(d.id)!.kind === 'start');
    const batch = await this.#ctx.tasks.submitManyIn(
      trx,
      starting.map((d) => (plans.get(d.id) as StartPlan).spec),
    );
    const started = new Map<number, SubmitResult>();
    for (const [i, r] of batch.results.entries()) {
      const def = starting[i]!;
      started.set(def.id, r);
      if (r.ok) continue;
      const slot = decisions.get(def.id)!.slot.toISOString();
      // The slot says what became of it in the claim's own commit.
      if (isLockBusy(r.error)) await setSlotState(trx, def.id, slot, 'waiting', 'disk lock held', nowIso);
      else await setSlotState(trx, def.id, slot, 'failed', describeStartError(r.error).detail, nowIso);
    }
    return { won, batch, started };
  }

  /** The queue messages of the pages in flight, sent one page after the other (see #afterCommit). */
  #sends: Promise<void> = Promise.resolve();

  /** After the commit: the queue messages, then each claimed run's report. */
  async #afterCommit(due: readonly DefineRow[], p: BatchPlan, claimed: Claimed, targets: RunTargets, now: Date, report: TickReport): Promise<void> {
    const { decisions, plans } = p;
    // One page's queue messages at a time: the pages of a tick overlap, and two pg-boss inserts of
    // job batches at once deadlocked (slot-scale with two servers: "deadlock detected", the tasks
    // left for the sweep to send). The pages' database work still overlaps.
    const send = this.#sends.then(() => claimed.batch.send());
    this.#sends = send.catch(() => undefined);
    try {
      await send;
    } catch (err) {
      report.errors++;
      this.#ctx.log.error({ err }, 'scheduled tasks were created but not all could be queued');
    }

    for (const def of due) {
      if (!claimed.won.has(def.id)) continue;
      const dec = decisions.get(def.id);
      if (!dec) continue;
      try {
        await this.#report(def, dec, plans.get(def.id), claimed.started.get(def.id), targets, now, report);
      } catch (err) {
        report.errors++;
        this.#ctx.log.error({ err, defineId: def.id, define: def.name }, 'scheduled run failed unexpectedly');
      }
    }
  }

  /** Decides for each due run: skipped as an overlap, failed in its checks, or its create task. */
  async #planRuns(fires: readonly DefineRow[], now: Date, targets: RunTargets): Promise<Map<number, RunPlan>> {
    const plans = new Map<number, RunPlan>();
    if (fires.length === 0) return plans;
    const waitingSince = new Date(now.getTime() - (this.#s.retryS + 60) * 1000).toISOString();
    const busy = await definitionsInProgress(
      this.#ctx.db,
      fires.map((d) => ({ id: d.id, vmUuid: d.vm_uuid })),
      waitingSince,
    );
    const starting: DefineRow[] = [];
    for (const d of fires) {
      if (busy.has(d.id) || this.#s.retries.has(runKey(d.id))) plans.set(d.id, { kind: 'overlap' });
      else starting.push(d);
    }
    const name = (def: DefineRow): string => formatAutoSnapshotName(def.name, now);
    // No lookup of taken names (it was 22 s of a 100,000-definition slot, issue 17): a tick is its
    // slot's first attempt (a run waiting for its disk lock retries through startRun, which looks
    // the name up), and `<define>-<this tick's second>` cannot be held by a snapshot of this
    // definition's earlier slots: each fired at an earlier second, since firing moves next_run
    // past its tick and slots are whole minutes. Only another create of that exact name (a user's,
    // a run-now in the same second) can hold it, and then the bulk insert's ON CONFLICT in the
    // claim's transaction fails the run with the same 406 `Snapshot already exists` (task.insert.ts):
    // slot failed, FAILURE entry, alert. One order differs: such a run of a VM that is also not
    // operational now fails with 423 (its check comes first here) instead of 406.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < starting.length) {
        const def = starting[next++]!;
        const n = name(def);
        try {
          const { caller, target } = targets.target(def);
          const spec = await planRun(this.#ctx, caller, target, def, n, false);
          plans.set(def.id, { kind: 'start', spec, name: n });
        } catch (err) {
          plans.set(def.id, { kind: 'fail', err, name: n });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, starting.length) }, worker));
    return plans;
  }

  /** After the commit: metrics, logs, the report, failure entries and alerts, and lock waits. */
  async #report(
    def: DefineRow,
    dec: SlotDecision,
    plan: RunPlan | undefined,
    started: SubmitResult | undefined,
    targets: RunTargets,
    now: Date,
    report: TickReport,
  ): Promise<void> {
    const labels = targets.labels(def);
    const slotIso = dec.slot.toISOString();
    const ref: SlotRef = { defineId: def.id, define: def.name, vm: labels.vm, slot: slotIso };
    const missed = dec.missed + (dec.kind === 'skip' ? 1 : 0);
    if (missed > 0) {
      this.#s.observer.slotsSkipped(labels, 'missed', missed);
      this.#ctx.log.warn({ ...ref, missed, catchup: def.catchup === 1 }, 'scheduled slots missed');
    }
    if (dec.kind === 'skip' || !plan) {
      report.skipped.push({ ...ref, reason: 'missed' });
      return;
    }
    if (plan.kind === 'overlap') {
      this.#s.observer.slotsSkipped(labels, 'overlap', 1);
      this.#ctx.log.warn(ref, 'scheduled slot skipped: the previous automatic snapshot is still in progress');
      report.skipped.push({ ...ref, reason: 'overlap' });
      return;
    }
    const failed = plan.kind === 'fail' ? plan.err : started && !started.ok ? started.error : null;
    if (plan.kind === 'start' && started?.ok) {
      this.#s.observer.slotFired(labels, now.getTime() - dec.slot.getTime());
      report.fired.push({ ...ref, taskId: started.taskId, name: plan.name, late: dec.late });
      return;
    }
    if (isLockBusy(failed)) {
      report.waiting.push(ref);
      this.#ctx.log.info(ref, 'scheduled run waits for the disk lock');
      const run = { defineId: def.id, slot: dec.slot, deadline: now.getTime() + this.#s.retryS * 1000 };
      this.#s.retries.start(runKey(def.id), (signal) => waitAndRun(this.#ctx, this.#s, run, signal));
      return;
    }
    // The slot row says `failed` already (written with the claim); the entry and alert follow,
    // and the slot takes the reason they settle on (a capacity skip names its storage).
    const detail = await recordStartFailure(
      this.#ctx,
      this.#s,
      { def, vm: targets.vm(def), diskArrayId: targets.diskArrayId(def), name: plan.name, labels },
      failed,
    );
    // A storage below the free-space floor is a skip (capacity.skip.ts), not a failure.
    const skipped = failed instanceof StorageFullError;
    await setSlotState(this.#ctx.db, def.id, slotIso, skipped ? 'skipped' : 'failed', detail, now.toISOString());
    if (skipped) report.skipped.push({ ...ref, reason: 'capacity' });
    else report.failed.push({ ...ref, detail });
  }
}

/** A page's decisions, claim requests and run plans, made before its claim's transaction writes. */
interface BatchPlan {
  readonly decisions: Map<number, SlotDecision>;
  readonly reqs: Map<number, ClaimRequest>;
  readonly fires: readonly DefineRow[];
  readonly plans: Map<number, RunPlan>;
}

/** What the claim's transaction committed: the slots won and the tasks submitted. */
interface Claimed {
  readonly won: Set<number>;
  readonly batch: Awaited<ReturnType<AppContext['tasks']['submitManyIn']>>;
  readonly started: Map<number, SubmitResult>;
}

type StartPlan = { readonly kind: 'start'; readonly spec: TaskSpec<CreateContext>; readonly name: string };
/** What a due run will do, decided before the claim. */
type RunPlan = { readonly kind: 'overlap' } | StartPlan | { readonly kind: 'fail'; readonly err: unknown; readonly name: string };

function runKey(defineId: number): string {
  return `run:${defineId}`;
}
