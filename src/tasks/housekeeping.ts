/**
 * Housekeeping: finished tasks and task-log entries older than ESNAP_TASKLOG_DAYS are removed, so
 * the database does not grow with time at the steady rate of the task history.
 *
 * What is removed, and what never is:
 * - a task in a final state (SUCCESS, FAILURE, REVOKED) that finished before the cutoff. A task
 *   PENDING or STARTED is never touched, however old. No table has a foreign key to `task`; the
 *   only rows naming a task id are `task_lock` (released in the completion transaction, so a
 *   finished task has none, but a task still named by a lock is skipped all the same) and
 *   `task_log` (pruned here by its own time). Queue messages in pg-boss carry task ids too; a late
 *   result for a removed task finds no row and is ignored, as for any unknown task.
 * - a task-log entry whose time (the finish time: completion rewrites it) is before the cutoff and
 *   whose status is final. An entry still PENDING belongs to a task that has not ended and stays.
 *
 * How: in batches of `batchSize` rows, each batch one short statement (on SQLite its own
 * transaction, so the single writer lock is held for milliseconds), with a pause between batches
 * so API requests get the database in between. Several servers may run this at the same moment
 * on one PostgreSQL: the batches select with SKIP LOCKED, a row deleted by another server is simply
 * not counted here, and nothing else changes, so concurrent runs are harmless.
 *
 * Space: deleted rows free their pages. SQLite (esnap does not turn on auto_vacuum) keeps the freed
 * pages in the file's free list and reuses them for new rows, so the file stops growing once the
 * history reaches the retention window instead of shrinking; when an operator has set
 * auto_vacuum=INCREMENTAL, the freed pages are given back with `PRAGMA incremental_vacuum`.
 * PostgreSQL's autovacuum makes the dead tuples reusable the same way.
 *
 * @example
 *   const hk = new Housekeeping(ctx, { retentionDays: 90 });
 *   hk.start();              // one pass now, then hourly
 *   await hk.run();          // { tasks: 1200, logs: 1300, batches: 7, cutoff: '…' }
 *   await hk.stop();
 */
import { releaseFreePages, skipLockedRows } from '../db/capabilities.js';
import type { AppContext } from '../app-context.js';
import { Ticker } from '../lib/ticker.js';
import { FINAL_TASK_STATES } from '../domain/task-state.js';

export const DEFAULT_TASKLOG_DAYS = 90;

const DAY_MS = 24 * 3600 * 1000;

export interface HousekeepingOptions {
  /** Age in days after which finished tasks and task-log entries go (ESNAP_TASKLOG_DAYS). */
  readonly retentionDays: number;
  /** Pause between passes (default one hour). */
  readonly everyMs?: number;
  /** Rows per DELETE statement (default 500). */
  readonly batchSize?: number;
  /** Pause between two batches, so other work gets the database (default 10 ms). */
  readonly pauseMs?: number;
}

/** What one pass removed: rows, and the DELETE statements it took. */
export interface HousekeepingReport {
  readonly cutoff: string;
  readonly tasks: number;
  readonly logs: number;
  readonly batches: number;
  /** The pass ended early because `stop()` was called. */
  readonly interrupted: boolean;
}

export class Housekeeping {
  readonly #ctx: AppContext;
  readonly #retentionMs: number;
  readonly #batchSize: number;
  readonly #pauseMs: number;
  /** One pass at start() (a server that was down for a while catches up at once), then every `everyMs`. */
  readonly #ticker: Ticker;
  /** Set by stop(): the pass in flight ends after its current batch. */
  #closing = false;
  #inFlight: Promise<HousekeepingReport> | null = null;
  /** Passes completed and passes failed (each failure is logged). */
  runs = 0;
  errors = 0;
  last: HousekeepingReport | null = null;

  constructor(ctx: AppContext, opts: HousekeepingOptions) {
    if (!Number.isSafeInteger(opts.retentionDays) || opts.retentionDays <= 0) {
      throw new RangeError(`retentionDays must be a positive integer (got ${opts.retentionDays})`);
    }
    this.#ctx = ctx;
    this.#retentionMs = opts.retentionDays * DAY_MS;
    this.#batchSize = opts.batchSize ?? 500;
    this.#pauseMs = opts.pauseMs ?? 10;
    // The ticker waits on a real timer, not the injected clock's sleep: the clock only dates the
    // cutoff, and a test's manual clock must not see this loop among its sleepers.
    this.#ticker = new Ticker('housekeeping', opts.everyMs ?? 3600 * 1000, () => this.#scheduledPass(), ctx.log, { immediate: true });
  }

  /** Runs a pass now, then every `everyMs`. */
  start(): void {
    this.#closing = false;
    this.#ticker.start();
  }

  /** Ends the loop; a pass in flight stops after its current batch and is awaited. */
  async stop(): Promise<void> {
    this.#closing = true;
    await this.#ticker.stop();
    while (this.#inFlight) await this.#inFlight.catch(() => undefined);
    this.#closing = false;
  }

  /**
   * One pass with the cutoff taken from the clock now. Passes never overlap: a call while one is
   * in flight waits for it and then runs its own.
   */
  async run(): Promise<HousekeepingReport> {
    while (this.#inFlight) await this.#inFlight.catch(() => undefined);
    const pass = this.#pass();
    this.#inFlight = pass;
    try {
      return await pass;
    } finally {
      if (this.#inFlight === pass) this.#inFlight = null;
    }
  }

  /** The loop's pass: counted and logged here under its own name, so the ticker never sees an error. */
  async #scheduledPass(): Promise<void> {
    try {
      const report = await this.run();
      this.runs++;
      this.last = report;
      if (report.tasks + report.logs > 0) this.#ctx.log.info({ ...report }, 'housekeeping removed old tasks and task-log entries');
    } catch (err) {
      this.errors++;
      this.#ctx.log.error({ err, loop: 'housekeeping', errors: this.errors }, 'housekeeping pass failed');
    }
  }

  async #pass(): Promise<HousekeepingReport> {
    const cutoff = new Date(this.#ctx.clock.now().getTime() - this.#retentionMs).toISOString();
    let tasks = 0;
    let logs = 0;
    let batches = 0;
    for (const table of ['task', 'task_log'] as const) {
      for (;;) {
        if (this.#closing) return { cutoff, tasks, logs, batches, interrupted: true };
        const n = table === 'task' ? await this.#deleteTasks(cutoff) : await this.#deleteLogs(cutoff);
        batches++;
        if (table === 'task') tasks += n;
        else logs += n;
        // A short batch means nothing is left (or another server holds the rest: it deletes them).
        if (n < this.#batchSize) break;
        await new Promise((r) => setTimeout(r, this.#pauseMs));
      }
    }
    if (tasks + logs > 0) await this.#releasePages();
    return { cutoff, tasks, logs, batches, interrupted: false };
  }

  async #deleteTasks(cutoff: string): Promise<number> {
    const { db } = this.#ctx;
    // `created < cutoff` is implied by `finished < cutoff`; it is there so both engines walk the
    // (state, created) index instead of the whole table.
    let pick = db
      .selectFrom('task as t')
      .select('t.id')
      .where('t.state', 'in', [...FINAL_TASK_STATES])
      .where('t.created', '<', cutoff)
      .where('t.finished', '<', cutoff)
      .where((eb) => eb.not(eb.exists(eb.selectFrom('task_lock as l').select('l.key').whereRef('l.task_id', '=', 't.id'))))
      .limit(this.#batchSize);
    pick = skipLockedRows(db, pick);
    const res = await db.deleteFrom('task').where('id', 'in', pick).executeTakeFirst();
    return Number(res.numDeletedRows);
  }

  async #deleteLogs(cutoff: string): Promise<number> {
    const { db } = this.#ctx;
    // Oldest first through the primary key: ids grow with time, so each batch finds its rows at
    // the start of the table.
    let pick = db
      .selectFrom('task_log')
      .select('id')
      .where('time', '<', cutoff)
      .where('status', 'in', [...FINAL_TASK_STATES])
      .orderBy('id')
      .limit(this.#batchSize);
    pick = skipLockedRows(db, pick);
    const res = await db.deleteFrom('task_log').where('id', 'in', pick).executeTakeFirst();
    return Number(res.numDeletedRows);
  }

  /** SQLite with auto_vacuum=INCREMENTAL gives freed pages back (src/db/capabilities.ts). */
  async #releasePages(): Promise<void> {
    await releaseFreePages(this.#ctx.db);
  }
}
