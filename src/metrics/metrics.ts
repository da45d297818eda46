/**
 * esnap's Prometheus metrics (prom-client), one registry per runtime. Two kinds:
 * - events counted as they happen in this process (slots fired and skipped, failures, task
 *   durations, tick lag, alerts); with several servers, sum them across servers;
 * - state read from the database at each scrape (last success and staleness of every definition,
 *   snapshot count and bytes per VM disk, queue depth, storage size and free bytes), identical
 *   whichever server is scraped.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AppContext } from '../app-context.js';
import type { TaskQueue } from '../queue/queue.js';
import type { CompletionEvent, CompletionListener } from '../tasks/task.types.js';
import type { DefineLabels, SchedulerObserver, SkipReason } from '../scheduler/services.js';
import type { Alert } from '../alerts/alert.messages.js';
import type { AlertObserver } from '../alerts/alert.sink.js';
import { collectState } from './metrics.collect.js';

const DEFINE = ['vm', 'disk', 'define'] as const;
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const LAG_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400];
const OPERATIONS: Readonly<Record<string, string>> = {
  snapshot_create: 'create',
  snapshot_delete: 'delete',
  snapshot_rollback: 'rollback',
};

function labels(d: DefineLabels): Record<(typeof DEFINE)[number], string> {
  return { vm: d.vm, disk: String(d.disk), define: d.define };
}

/**
 * A completion listener that observes, for each task whose kind `operations` names, its duration
 * from start (or submission if it never started) to completion, labelled with the operation and
 * the lower-cased final state. Tasks of other kinds and rows without valid times are ignored.
 *
 * @example tasks.addListener(durationListener({ snapshot_create: 'create' }, histogram));
 */
export function durationListener(operations: Readonly<Record<string, string>>, histogram: Histogram<'operation' | 'result'>): CompletionListener {
  return {
    committed: (e: CompletionEvent) => {
      const operation = operations[e.task.kind];
      if (!operation) return;
      const from = Date.parse(e.task.started ?? e.task.created);
      const to = Date.parse(e.task.finished ?? '');
      if (!Number.isFinite(from) || !Number.isFinite(to)) return;
      histogram.observe({ operation, result: e.state.toLowerCase() }, Math.max(0, to - from) / 1000);
    },
  };
}

export class Metrics implements SchedulerObserver, AlertObserver {
  readonly registry = new Registry();
  readonly #ctx: Pick<AppContext, 'db' | 'clock'>;
  readonly #queue: TaskQueue;

  readonly firedTotal: Counter<'vm' | 'disk' | 'define'>;
  readonly skippedTotal: Counter<'vm' | 'disk' | 'define' | 'reason'>;
  readonly failuresTotal: Counter<'vm' | 'disk' | 'define'>;
  readonly slotLag: Histogram;
  readonly tickLag: Gauge;
  readonly tickDuration: Histogram;
  readonly tickErrors: Counter;
  readonly lastSuccess: Gauge<'vm' | 'disk' | 'define'>;
  readonly stale: Gauge<'vm' | 'disk' | 'define'>;
  readonly snapshots: Gauge<'vm' | 'disk' | 'status'>;
  readonly snapshotBytes: Gauge<'vm' | 'disk'>;
  readonly queueDepth: Gauge<'node'>;
  readonly storageSize: Gauge<'node' | 'storage'>;
  readonly storageFree: Gauge<'node' | 'storage'>;
  readonly operationDuration: Histogram<'operation' | 'result'>;
  readonly alerts: Counter<'type' | 'priority'>;
  readonly webhookFailures: Counter<'type'>;

  constructor(ctx: Pick<AppContext, 'db' | 'clock'>, queue: TaskQueue) {
    this.#ctx = ctx;
    this.#queue = queue;
    const registers = [this.registry];
    this.firedTotal = new Counter({ name: 'esnap_schedule_slots_fired_total', help: 'Scheduled slots whose automatic snapshot started, per definition', labelNames: DEFINE, registers });
    this.skippedTotal = new Counter({
      name: 'esnap_schedule_slots_skipped_total',
      help: 'Scheduled slots skipped, per definition: overlap (previous run still in progress), missed (server down, catchup off or older missed slots) or capacity (storage below ESNAP_MIN_FREE_PERCENT)',
      labelNames: [...DEFINE, 'reason'],
      registers,
    });
    this.failuresTotal = new Counter({ name: 'esnap_definition_failures_total', help: 'Automatic snapshot runs that failed to start or whose task failed, per definition', labelNames: DEFINE, registers });
    this.slotLag = new Histogram({ name: 'esnap_schedule_slot_lag_seconds', help: 'Time from a slot to the start of its automatic snapshot', buckets: LAG_BUCKETS, registers });
    this.tickLag = new Gauge({ name: 'esnap_scheduler_tick_lag_seconds', help: 'How late the last scheduler tick started after the instant it was planned for', registers });
    this.tickDuration = new Histogram({ name: 'esnap_scheduler_tick_duration_seconds', help: 'Duration of scheduler ticks', buckets: DURATION_BUCKETS, registers });
    this.tickErrors = new Counter({ name: 'esnap_scheduler_tick_errors_total', help: 'Scheduler ticks or checks that failed (logged)', registers });
    this.lastSuccess = new Gauge({
      name: 'esnap_definition_last_success_timestamp_seconds',
      help: 'Time of the last successful automatic snapshot per definition (0: never)',
      labelNames: DEFINE,
      registers,
    });
    this.stale = new Gauge({ name: 'esnap_definition_stale', help: '1 when no automatic snapshot of an active definition succeeded within two periods', labelNames: DEFINE, registers });
    this.snapshots = new Gauge({ name: 'esnap_snapshots', help: 'Snapshots per VM disk and status (ok, pending, rollback, lost)', labelNames: ['vm', 'disk', 'status'], registers });
    this.snapshotBytes = new Gauge({ name: 'esnap_snapshot_bytes', help: 'Bytes of the snapshots per VM disk as storage reports them (lost ones excluded)', labelNames: ['vm', 'disk'], registers });
    this.queueDepth = new Gauge({ name: 'esnap_queue_depth', help: 'Tasks sent to a node queue and not yet taken', labelNames: ['node'], registers });
    // As the agents last reported them (after each task that changed the storage, and every minute).
    this.storageSize = new Gauge({ name: 'esnap_storage_size_bytes', help: 'Size of a node storage in bytes, as its agent last reported it', labelNames: ['node', 'storage'], registers });
    this.storageFree = new Gauge({ name: 'esnap_storage_free_bytes', help: 'Free bytes of a node storage (available to esnap), as its agent last reported them', labelNames: ['node', 'storage'], registers });
    this.operationDuration = new Histogram({
      name: 'esnap_snapshot_operation_duration_seconds',
      help: 'Duration of snapshot create, delete and rollback tasks, from start (or submission if never started) to completion',
      labelNames: ['operation', 'result'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.alerts = new Counter({ name: 'esnap_alerts_total', help: 'Alerts raised', labelNames: ['type', 'priority'], registers });
    this.webhookFailures = new Counter({ name: 'esnap_alert_webhook_failures_total', help: 'Alerts the webhook did not accept after every retry', labelNames: ['type'], registers });
  }

  // SchedulerObserver
  slotFired(d: DefineLabels, lagMs: number): void {
    this.firedTotal.inc(labels(d));
    this.slotLag.observe(Math.max(0, lagMs) / 1000);
  }
  slotsSkipped(d: DefineLabels, reason: SkipReason, count: number): void {
    this.skippedTotal.inc({ ...labels(d), reason }, count);
  }
  runFailed(d: DefineLabels): void {
    this.failuresTotal.inc(labels(d));
  }
  tickDone(durationMs: number, lagMs: number | null): void {
    this.tickDuration.observe(durationMs / 1000);
    if (lagMs !== null) this.tickLag.set(Math.max(0, lagMs) / 1000);
  }
  tickFailed(): void {
    this.tickErrors.inc();
  }

  // AlertObserver
  alertRaised(a: Alert): void {
    this.alerts.inc({ type: a.type, priority: a.priority });
  }
  webhookFailed(a: Alert): void {
    this.webhookFailures.inc({ type: a.type });
  }

  /** Observes the duration of every snapshot create, delete and rollback task. */
  listener(): CompletionListener {
    return durationListener(OPERATIONS, this.operationDuration);
  }

  /** Reads the database-derived gauges afresh and renders every metric. */
  async render(): Promise<{ contentType: string; body: string }> {
    await collectState(this.#ctx, this.#queue, this);
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
