/**
 * What every feature service gets: the database, the clock and the task machinery. Built once by
 * the composition root (`src/bin`) or by a test; nothing here reads the environment.
 */
import type { Kysely } from 'kysely';
import type { Database } from './db/schema.js';
import type { TaskService } from './tasks/task.service.js';
import type { TaskEvents } from './tasks/task.events.js';
import type { AutomationServices } from './scheduler/services.js';
import type { CapacitySettings } from './snapshots/capacity.js';

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** esnap's view of its logger (pino in `esnap`, see src/log.ts); the levels it uses. */
export interface Logger {
  debug(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
}

export interface AppSettings {
  readonly streamTimeoutS: number;
  /** Name of the node whose agent runs in this process, if any. */
  readonly localNode: string | null;
  /** ESNAP_PUBLIC_URL (no trailing slash): base of absolute links; null builds them from the request. */
  readonly publicUrl?: string | null;
}

export interface AppContext {
  readonly db: Kysely<Database>;
  readonly clock: Clock;
  readonly tasks: TaskService;
  readonly events: TaskEvents;
  readonly settings: AppSettings;
  readonly log: Logger;
  /** Alerts, metrics and lock waits of automatic snapshots (retention reads them here). */
  readonly automation: AutomationServices;
  /** The storage free-space floor (ESNAP_MIN_FREE_PERCENT) that snapshot creates check. */
  readonly capacity: CapacitySettings;
}

export { SYSTEM_USER_ID, SYSTEM_USERNAME, DEFAULT_DC } from './domain/system.js';

export function isoNow(clock: Clock): string {
  return clock.now().toISOString();
}
