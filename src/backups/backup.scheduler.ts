/**
 * Scheduled backups: backup definitions fire as snapshot definitions do, with the scheduler's
 * pure slot arithmetic (slot-plan.ts: the most recent due slot fires once, older ones are missed;
 * staleness after two silent periods) and a compare-and-set claim on `backup_define.next_run`
 * that commits with the backup's task (a slot fires at most once, with any number of servers).
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
import { planCreateBackup } from './backup.service.js';

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
        dec = decideSlot({ schedule: d.schedule, tz: d.tz, catchup: true, nextRun: new Date(d.next_run!) }, now);
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
      const outcome = await ctx.db.transaction().execute(async (trx) => {
        const moved = await trx
          .updateTable('backup_define')
          .set({ next_run: nextRun, ...(dec.kind === 'fire' && !overlap ? { last_run: nowIso } : {}) })
          .where('id', '=', d.id)
          .where('next_run', '=', d.next_run)
          .where('active', '=', 1)
          .executeTakeFirst();
        if (Number(moved.numUpdatedRows) === 0) return null; // another server claimed it
        if (!spec) return { batch: null };
        const batch = await ctx.tasks.submitManyIn(trx, [spec]);
        const r = batch.results[0]!;
        if (!r.ok) await trx.updateTable('backup_define').set({ last_error: describeStartError(r.error).detail }).where('id', '=', d.id).execute();
        return { batch };
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
