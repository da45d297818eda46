/**
 * What snapshot definitions and backup definitions share: the next slot of an active schedule,
 * the task-log entry of a definition write, and the monitoring fields of extended output.
 */
import { randomUUID } from 'node:crypto';
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import type { VmRow } from '../db/schema.js';
import { nextCronRun } from '../domain/cron.js';
import { makeDummyTaskId } from '../domain/taskid.js';
import { formatDanubeTime } from '../domain/time.js';
import { logDetail } from '../tasks/task-log.js';

/** The next slot of an active definition; null when paused (or for a never-firing schedule stored before checkSchedule refused them). */
export function nextRunOf(ctx: AppContext, active: boolean, schedule: string, tz: string): string | null {
  if (!active) return null;
  try {
    return nextCronRun(schedule, ctx.clock.now(), tz).toISOString();
  } catch (err) {
    if (err instanceof RangeError) return null;
    throw err;
  }
}

/** The SUCCESS task-log entry of a definition write (Danube logs them under a dummy task id). */
export function definitionLogEntry(ctx: AppContext, caller: Caller, vm: VmRow, msg: string, pairs: Array<readonly [string, unknown]>) {
  return {
    time: ctx.clock.now().toISOString(),
    taskId: makeDummyTaskId({ userId: caller.user.id, ownerId: vm.owner_id, dcBound: true, dcId: caller.dc.id }, randomUUID()),
    taskType: 'd',
    status: 'SUCCESS' as const,
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: vm.owner_id,
    dcId: caller.dc.id,
    msg,
    detail: logDetail(pairs, ' '),
    object: { type: 'vm', name: vm.hostname, alias: vm.alias, pk: vm.uuid },
  };
}

export interface MonitoringFields {
  next_run: string | null;
  last_run: string | null;
  last_success: string | null;
  last_error: string | null;
}

const time = (v: string | null): string | null => (v === null ? null : formatDanubeTime(new Date(v)));

/** esnap's monitoring fields of an extended definition object. */
export function monitoringFields(row: { next_run: string | null; last_run: string | null; last_success: string | null; last_error: string | null }): MonitoringFields {
  return { next_run: time(row.next_run), last_run: time(row.last_run), last_success: time(row.last_success), last_error: row.last_error };
}
