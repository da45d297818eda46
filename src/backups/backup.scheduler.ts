/**
 * Scheduled backups: backup definitions fire as snapshot definitions do, with the scheduler's
 * pure slot arithmetic (slot-plan.ts: the most recent due slot fires once, older ones are missed;
 * with `catchup` off a late slot is skipped too; staleness after two silent periods) and a
 * compare-and-set claim on `backup_define.next_run` that commits with the backup's task and the
 * slot's row in `backup_slot` (a slot fires at most once, with any number of servers; the row
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
import type { SlotState } from '../scheduler/slot.repository.js';
import type { TaskSpec } from '../tasks/task.types.js';

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
      const nextRun = dec.nextRun?.toISOString() ?? null;
      const disks = await ctx.db.selectFrom('vm_disk').select('real_id').where('vm_uuid', '=', d.vm_uuid).orderBy('real_id').execute();
      const diskId = disks.findIndex((x) => x.real_id === d.disk_real_id) + 1;
      const busy = await ctx.db
        .selectFrom('task')
        .select('context')
        .where('vm_uuid', '=', d.vm_uuid)
        .where('kind', '=', 'backup_create')
        .where('state', 'in', ['PENDING', 'STARTED'])
        .execute();
      const overlap = busy.some((t) => (JSON.parse(t.context) as { defineId?: number }).defineId === d.id);
      let spec = null;
      let failure: unknown = null;
      if (dec.kind === 'fire' && !overlap) {
        try {
          spec = await planCreateBackup(ctx, await systemCaller(ctx, d.dc_id), d.vm_uuid, d.name, { disk_id: diskId }, () => undefined, true);
        } catch (err) {
          failure = err;
        }
      }
      const slot = dec.slot.toISOString();
      const source = dec.kind === 'fire' && dec.late ? 'catchup' : 'cron';
      // The slot travels with the task, so its failure marks the slot failed (backup.kinds.ts).
      if (spec) spec = withSlot(spec, slot);
      const outcome = await ctx.db.transaction().execute(async (trx) => {
        const moved = await trx
          .updateTable('backup_define')
          .set({ next_run: nextRun, ...(dec.kind === 'fire' && !overlap ? { last_run: nowIso } : {}) })
          .where('id', '=', d.id)
          .where('next_run', '=', d.next_run)
          .where('active', '=', 1)
          .executeTakeFirst();
        if (Number(moved.numUpdatedRows) === 0) return null; // another server claimed it
        // The slot's row; its primary key refuses the same slot twice (next_run set back).
        const state = (s: SlotState, reason: string | null) => ({ define_id: d.id, slot, source, state: s, reason, created: nowIso, changed: nowIso });
        let row = dec.kind !== 'fire' ? state('skipped', 'missed') : overlap ? state('skipped', 'overlap') : !spec ? state('failed', describeStartError(failure).detail) : state('fired', null);
        let batch = null;
        if (spec) {
          batch = await ctx.tasks.submitManyIn(trx, [spec]);
          const r = batch.results[0]!;
          if (!r.ok) {
            row = state('failed', describeStartError(r.error).detail);
            await trx.updateTable('backup_define').set({ last_error: row.reason }).where('id', '=', d.id).execute();
          }
        }
        const recorded = await trx.insertInto('backup_slot').values(row).onConflict((oc) => oc.columns(['define_id', 'slot']).doNothing()).returning('define_id').execute();
        if (recorded.length === 0) throw new SlotTaken();
        return { batch };
      }).catch((err: unknown) => {
        if (err instanceof SlotTaken) return null;
        throw err;
      });
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
