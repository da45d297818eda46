/**
 * What automatic snapshots need: the alert sink, the metrics observer, the pool of lock waits and
 * the lock-wait limit. The runtime builds one set and puts it on the AppContext (`ctx.automation`),
 * where code that only has the context (the retention prune, run from a task completion) finds it;
 * a context without it does not type-check.
 */
import type { AlertSink } from '../alerts/alert.sink.js';
import type { RetryPool } from './retry.js';

/** Labels that name a definition in metrics and logs. */
export interface DefineLabels {
  readonly vm: string;
  /** Array disk id (1-based). */
  readonly disk: number;
  readonly define: string;
}

/** Why slots were skipped; `capacity`: a storage below ESNAP_MIN_FREE_PERCENT (src/snapshots/capacity.ts). */
export type SkipReason = 'overlap' | 'missed' | 'capacity';

/** What the scheduler reports as it works; the metrics implement it. */
export interface SchedulerObserver {
  slotFired(d: DefineLabels, lagMs: number): void;
  slotsSkipped(d: DefineLabels, reason: SkipReason, count: number): void;
  /** A run that failed to start or whose task failed. */
  runFailed(d: DefineLabels): void;
  tickDone(durationMs: number, lagMs: number | null): void;
  tickFailed(): void;
}

export const noopObserver: SchedulerObserver = {
  slotFired: () => undefined,
  slotsSkipped: () => undefined,
  runFailed: () => undefined,
  tickDone: () => undefined,
  tickFailed: () => undefined,
};

export const DEFAULT_SCHEDULE_RETRY_S = 300;

export interface AutomationServices {
  readonly alerts: AlertSink;
  readonly observer: SchedulerObserver;
  readonly retries: RetryPool;
  /** ESNAP_SCHEDULE_RETRY_S. */
  readonly retryS: number;
}
