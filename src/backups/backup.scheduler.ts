/**
 * Scheduled backups: backup definitions fire as snapshot definitions do, with the scheduler's
 * pure slot arithmetic (slot-plan.ts: the most recent due slot fires once, older ones are missed;
 * with `catchup` off a late slot is skipped too; staleness after two silent periods) and a
 * compare-and-set claim on `backup_define.next_run` that commits with the backup's task and the
 * slot's row in `backup_slot`, taken as the snapshot scheduler takes its own (readPlanWrite: on
 * PostgreSQL the definition's row is read FOR UPDATE SKIP LOCKED in the claim's transaction, so a
 * server never waits for another's claim) (a slot fires at most once, with any number of servers; the row
 * says fired, skipped with the reason — missed, overlap — or failed with the message, and a
 * fired slot whose backup fails is marked failed by the task's completion).
 *
 * A run is skipped while the definition's previous backup is still pending or running (a backup
 * of a large disk may outlast its period). A run that cannot start (VM or node not operational,
 * disk lock held) records `last_error` and raises Danube's alert; the next slot tries again.
 * Definition alerts: "failed" (backup.kinds.ts, each failed backup), "stale" (checked here).
 */
import type { AppContext } from '../app-context.js';
import { alerts } from '../alerts/alert.messages.js';
import { describeStartError } from '../scheduler/run.js';
import { decideSlot, isStale, latestSlots } from '../scheduler/slot-plan.js';
import { sleeperOf, type Sleeper } from '../lib/clock.js';
import type { AutomationServices } from '../scheduler/services.js';
import { systemCaller } from '../snapshots/snapshot.context.js';
import { planCreateBackup, type BackupCreateContext } from './backup.service.js';
import { SLOT_HISTORY_DAYS } from '../scheduler/scheduler.js';
import type { SlotSource, SlotState } from '../scheduler/slot.repository.js';
import type { SubmittedBatch, TaskSpec } from '../tasks/task.types.js';
import type { Selectable, Transaction } from 'kysely';
import type { BackupDefineTable, Database } from '../db/schema.js';
import { readPlanWrite, skipLockedRows } from '../db/capabilities.js';
import type { SlotDecision } from '../scheduler/slot-plan.js';

/** A slot already recorded (its row exists): the transaction is rolled back, nothing fires twice. */
class SlotTaken extends Error {}

/** The create task of a scheduled slot: its context names the slot. */
function withSlot(spec: TaskSpec<BackupCreateContext>, slot: string): TaskSpec<BackupCreateContext> {
  return {
    ...spec,
    prepare: async (trx, taskId) => {
      const r = await spec.prepare(trx, taskId);
      return { ...r, context: { ...r.context, slot } };
    },
  };
}

/** A due definition as the tick reads it. */
type DueBackup = Selectable<BackupDefineTable> & { hostname: string; dc_id: number };

/** What a claimed slot does: an overlap, the backup's task, or the error that keeps it from starting. */
interface RunPlan {
  readonly overlap: boolean;
  readonly spec: TaskSpec<BackupCreateContext> | null;
  readonly failure: unknown;
}

const MINUTE_MS = 60_000;
const STALE_CHECK_MS = 5 * MINUTE_MS;

export interface BackupTickReport {
  readonly fired: Array<{ defineId: number; taskId: string }>;
  readonly skipped: Array<{ defineId: number; reason: 'overlap' | 'missed' }>;
  readonly failed: Array<{ defineId: number; detail: string }>;
}

export class BackupScheduler {
  readonly #ctx: AppContext;
  readonly #s: AutomationServices;
  readonly #sleeper: Sleeper;
  #loop: Promise<void> | null = null;
  #abort: AbortController | null = null;
  #chain: Promise<unknown> = Promise.resolve();
  readonly #staleAlerted = new Set<number>();

  constructor(ctx: AppContext, services: AutomationServices) {
    this.#ctx = ctx;
    this.#s = services;
    this.#sleeper = sleeperOf(ctx.clock);
  }

  start(): void {
    if (this.#loop) return;
    const abort = new AbortController();
    this.#abort = abort;
    this.#loop = this.#run(abort.signal);
  }

  async stop(): Promise<void> {
    if (!this.#loop) return;
    this.#abort!.abort();
    await this.#loop;
    this.#loop = null;
    await this.#chain.catch(() => undefined);
  }

  tick(): Promise<BackupTickReport> {
    const next = this.#chain.catch(() => undefined).then(() => this.#tick());
    this.#chain = next;
    return next;
  }

  async #run(signal: AbortSignal): Promise<void> {
    let lastStale = 0;
    while (!signal.aborted) {
      await this.tick().catch((err: unknown) => this.#ctx.log.error({ err }, 'backup scheduler tick failed'));
      const now = this.#ctx.clock.now().getTime();
      if (now - lastStale >= STALE_CHECK_MS) {
        lastStale = now;
        await this.checkStale().catch((err: unknown) => this.#ctx.log.error({ err }, 'backup stale check failed'));
        await this.pruneSlots().catch((err: unknown) => this.#ctx.log.error({ err }, 'backup slot history could not be pruned'));
      }
      const boundary = Math.floor(now / MINUTE_MS) * MINUTE_MS + MINUTE_MS + 5;
      await this.#sleeper.sleep(boundary - this.#ctx.clock.now().getTime(), signal);
    }
  }

  async #tick(): Promise<BackupTickReport> {
    const ctx = this.#ctx;
    const now = ctx.clock.now();
    const nowIso = now.toISOString();
    const report: BackupTickReport = { fired: [], skipped: [], failed: [] };
    const due = await ctx.db
      .selectFrom('backup_define as d')
      .innerJoin('vm', 'vm.uuid', 'd.vm_uuid')
      .selectAll('d')
      .select(['vm.hostname', 'vm.dc_id'])
      .where('d.active', '=', 1)
      .where('d.next_run', '<=', nowIso)
      .orderBy('d.next_run')
      .orderBy('d.id')
      .limit(500)
      .execute();
    for (const d of due) {
      let dec;
      try {
        dec = decideSlot({ schedule: d.schedule, tz: d.tz, catchup: d.catchup === 1, nextRun: new Date(d.next_run!) }, now);
      } catch (err) {
        ctx.log.error({ err, defineId: d.id }, 'backup definition schedule cannot be evaluated');
        await ctx.db.updateTable('backup_define').set({ next_run: null }).where('id', '=', d.id).where('next_run', '=', d.next_run).execute();
        continue;
      }
      const disks = await ctx.db.selectFrom('vm_disk').select('real_id').where('vm_uuid', '=', d.vm_uuid).orderBy('real_id').execute();
      const diskId = disks.findIndex((x) => x.real_id === d.disk_real_id) + 1;
      const nextRun = dec.nextRun?.toISOString() ?? null;
      const slot = dec.slot.toISOString();
      const source = dec.kind === 'fire' && dec.late ? 'catchup' : 'cron';
      // The claim (readPlanWrite, as the snapshot scheduler's): on PostgreSQL the definition's row
      // is taken inside the claim's transaction with SKIP LOCKED, so a row another server's claim
      // holds is passed over at once (that server fires the slot, or, if it rolls back, the row is
      // still due at the next tick) instead of waited for; the plan's reads go through other
      // connections beside it. On SQLite the read and the plan run before the write transaction.
      let claim;
      try {
        claim = await readPlanWrite(ctx.db, {
          read: (q) =>
            skipLockedRows(q, q.selectFrom('backup_define').select('id').where('id', '=', d.id).where('next_run', '=', d.next_run).where('active', '=', 1)).execute(),
          plan: (held) => (held.length === 0 ? Promise.resolve(null) : this.#plan(d, dec, diskId)),
          write: (trx, p) => this.#claim(trx, d, p, { nextRun, slot, source, nowIso }),
        });
      } catch (err) {
        if (!(err instanceof SlotTaken)) throw err;
        continue;
      }
      const outcome = claim.written;
      const { overlap, failure } = claim.plan ?? { overlap: false, failure: null };
      if (outcome === null) continue;
      if (dec.kind !== 'fire') {
        report.skipped.push({ defineId: d.id, reason: 'missed' });
        continue;
      }
      if (overlap) {
        ctx.log.warn({ defineId: d.id, define: d.name, vm: d.hostname }, 'scheduled backup skipped: the previous backup is still in progress');
        report.skipped.push({ defineId: d.id, reason: 'overlap' });
        continue;
      }
      const r = outcome.batch?.results[0];
      if (outcome.batch && r?.ok) {
        await outcome.batch.send().catch((err: unknown) => ctx.log.error({ err }, 'a scheduled backup task was created but not queued'));
        report.fired.push({ defineId: d.id, taskId: r.taskId });
        continue;
      }
      const err = failure ?? (r && !r.ok ? r.error : new Error('not started'));
      const detail = describeStartError(err).detail;
      await ctx.db.updateTable('backup_define').set({ last_error: detail }).where('id', '=', d.id).execute();
      this.#s.alerts.send({ ...alerts.startFailed(d.hostname, diskId, d.name), type: 'backup_create_failed', message: `Automatic backup ${d.hostname}/disk-${diskId}@${d.name} failed to start.` });
      report.failed.push({ defineId: d.id, detail });
    }
    return report;
  }

  /**
   * What a claimed slot does (no writes): skipped as an overlap while the definition's previous
   * backup is pending or running, else the backup's task, or the error that keeps it from starting.
   */
  async #plan(d: DueBackup, dec: SlotDecision, diskId: number): Promise<RunPlan> {
    const ctx = this.#ctx;
    if (dec.kind !== 'fire') return { overlap: false, spec: null, failure: null };
    const busy = await ctx.db
      .selectFrom('task')
      .select('context')
      .where('vm_uuid', '=', d.vm_uuid)
      .where('kind', '=', 'backup_create')
      .where('state', 'in', ['PENDING', 'STARTED'])
      .execute();
    const overlap = busy.some((t) => (JSON.parse(t.context) as { defineId?: number }).defineId === d.id);
    if (overlap) return { overlap, spec: null, failure: null };
    try {
      const spec = await planCreateBackup(ctx, await systemCaller(ctx, d.dc_id), d.vm_uuid, d.name, { disk_id: diskId }, () => undefined, true);
      // The slot travels with the task, so its failure marks the slot failed (backup.kinds.ts).
      return { overlap, spec: withSlot(spec, dec.slot.toISOString()), failure: null };
    } catch (err) {
      return { overlap, spec: null, failure: err };
    }
  }

  /**
   * The claim's writes, in one transaction: `next_run` moved by compare-and-set (0 rows: another
   * server claimed it), the slot's row, whose primary key refuses the same slot twice (next_run set
   * back: SlotTaken rolls everything back), and the backup's task, which commits with them.
   */
  async #claim(trx: Transaction<Database>, d: DueBackup, p: RunPlan, c: { nextRun: string | null; slot: string; source: SlotSource; nowIso: string }): Promise<{ batch: SubmittedBatch | null } | null> {
    const fires = p.spec !== null || (!p.overlap && p.failure !== null);
    const moved = await trx
      .updateTable('backup_define')
      .set({ next_run: c.nextRun, ...(fires ? { last_run: c.nowIso } : {}) })
      .where('id', '=', d.id)
      .where('next_run', '=', d.next_run)
      .where('active', '=', 1)
      .executeTakeFirst();
    if (Number(moved.numUpdatedRows) === 0) return null; // another server claimed it
    const state = (s: SlotState, reason: string | null) => ({ define_id: d.id, slot: c.slot, source: c.source, state: s, reason, created: c.nowIso, changed: c.nowIso });
    let row = p.overlap ? state('skipped', 'overlap') : p.spec ? state('fired', null) : p.failure !== null ? state('failed', describeStartError(p.failure).detail) : state('skipped', 'missed');
    let batch = null;
    if (p.spec) {
      batch = await this.#ctx.tasks.submitManyIn(trx, [p.spec]);
      const r = batch.results[0]!;
      if (!r.ok) {
        row = state('failed', describeStartError(r.error).detail);
        await trx.updateTable('backup_define').set({ last_error: row.reason }).where('id', '=', d.id).execute();
      }
    }
    const recorded = await trx.insertInto('backup_slot').values(row).onConflict((oc) => oc.columns(['define_id', 'slot']).doNothing()).returning('define_id').execute();
    if (recorded.length === 0) throw new SlotTaken();
    return { batch };
  }

  /** Drops slot history older than the snapshot scheduler keeps its own (SLOT_HISTORY_DAYS). */
  async pruneSlots(): Promise<number> {
    const before = new Date(this.#ctx.clock.now().getTime() - SLOT_HISTORY_DAYS * 24 * 3600_000).toISOString();
    const res = await this.#ctx.db.deleteFrom('backup_slot').where('created', '<', before).executeTakeFirst();
    return Number(res.numDeletedRows);
  }

  /** "Definition stale" alerts for backup definitions without a successful backup in two periods. */
  async checkStale(): Promise<number> {
    const ctx = this.#ctx;
    const now = ctx.clock.now();
    const rows = await ctx.db
      .selectFrom('backup_define as d')
      .innerJoin('vm', 'vm.uuid', 'd.vm_uuid')
      .select(['d.id', 'd.name', 'd.vm_uuid', 'd.disk_real_id', 'd.schedule', 'd.tz', 'd.last_success', 'd.created', 'vm.hostname'])
      .where('d.active', '=', 1)
      .where('d.next_run', 'is not', null)
      .execute();
    let sent = 0;
    const seen = new Set<number>();
    for (const r of rows) {
      let slots: Date[] = [];
      try {
        slots = latestSlots(r.schedule, r.tz, now, 2);
      } catch {
        continue;
      }
      if (!isStale({ active: true, schedule: r.schedule, tz: r.tz, lastSuccess: r.last_success, created: r.created }, now, slots)) continue;
      seen.add(r.id);
      if (this.#staleAlerted.has(r.id)) continue;
      this.#staleAlerted.add(r.id);
      const disks = await ctx.db.selectFrom('vm_disk').select('real_id').where('vm_uuid', '=', r.vm_uuid).orderBy('real_id').execute();
      const diskId = disks.findIndex((x) => x.real_id === r.disk_real_id) + 1;
      const a = alerts.stale(r.hostname, diskId, r.name, r.last_success);
      this.#s.alerts.send({ ...a, message: `Backup definition ${r.name} of server ${r.hostname}@disk-${diskId} is stale: ${a.message}` });
      sent++;
    }
    for (const id of [...this.#staleAlerted]) if (!seen.has(id)) this.#staleAlerted.delete(id);
    return sent;
  }
}
