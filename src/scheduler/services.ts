/**
 * What automatic snapshots need besides the AppContext: the alert sink, the metrics observer, the
 * pool of lock waits and the lock-wait limit. The runtime attaches one set per context; code
 * that only has the context (the retention prune, run from a task completion) finds it here.
 * The AppContext itself stays the shared, feature-neutral object it is.
 */
import type { AppContext } from '../app-context.js';
import { AlertSink } from '../alerts/alert.sink.js';
import { RetryPool } from './retry.js';

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

const attached = new WeakMap<AppContext, AutomationServices>();

export function attachAutomation(ctx: AppContext, services: AutomationServices): void {
  attached.set(ctx, services);
}

/** The services of `ctx`; a context built without them gets log-only alerts and no metrics. */
export function automationOf(ctx: AppContext): AutomationServices {
  let s = attached.get(ctx);
  if (!s) {
    s = {
      alerts: new AlertSink({ clock: ctx.clock, log: ctx.log }),
      observer: noopObserver,
      retries: new RetryPool(),
      retryS: DEFAULT_SCHEDULE_RETRY_S,
    };
    attached.set(ctx, s);
  }
  return s;
}
