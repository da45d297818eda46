/**
 * esnap's definition actions beyond Danube:
 * - run now (`POST …/define/snapshot/<def>/run/`): the definition's automatic snapshot, started at
 *   once with the scheduler's naming, checks, task flow and retention; as an API call it keeps
 *   Danube's immediate answers (400 `Task did not acquire lock` when the disk is busy);
 * - preview (`GET …/define/snapshot/<def>/preview/`): the next five runs, in UTC and in the
 *   definition's zone, and the snapshots retention would delete now, computed by the same pure
 *   functions as the real thing; `schedule`, `tz`, `retention` and `retention_days` given as
 *   parameters preview a change before it is made.
 */
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import { formatAutoSnapshotName, formatDanubeTime } from '../domain/time.js';
import { planRetention } from '../domain/retention.js';
import { loadStorageAndNode } from '../snapshots/snapshot.context.js';
import { retentionInput } from '../scheduler/retention.js';
import { startRun } from '../scheduler/run.js';
import { nextSlot } from '../scheduler/slot-plan.js';
import { lastValue, updatableRules, validateDefine, type DefineTarget } from './define.service.js';

const PREVIEW_RUNS = 5;

/**
 * Starts the definition's automatic snapshot now; returns the create task's id. A user asked for
 * it, so a storage below ESNAP_MIN_FREE_PERCENT answers 417 as a manual create does (startRun
 * throws it), where a scheduled slot would be skipped.
 */
export async function runDefinitionNow(ctx: AppContext, caller: Caller, target: DefineTarget): Promise<string> {
  const def = target.define!;
  const { storage, node } = await loadStorageAndNode(ctx.db, target.disk);
  const now = ctx.clock.now();
  const diskTarget = { vm: target.vm, disks: target.disks, disk: target.disk, diskArrayId: target.disks.indexOf(target.disk) + 1, storage, node };
  const taskId = await startRun(ctx, caller, diskTarget, def, formatAutoSnapshotName(def.name, now));
  await ctx.db.updateTable('snapshot_define').set({ last_run: now.toISOString() }).where('id', '=', def.id).execute();
  return taskId;
}

export interface PreviewRun {
  utc: string;
  /** The same instant as local time in the zone, with its offset: `2026-03-29T03:00:00+02:00`. */
  local: string;
}

export interface PreviewObject {
  hostname: string;
  name: string;
  disk_id: number;
  active: boolean;
  schedule: string;
  tz: string;
  retention: number;
  retention_days: number | null;
  next_runs: PreviewRun[];
  /** Names retention would delete now, oldest first. */
  retention_delete: string[];
  /** True while pruning is stopped because the definition's last run failed. */
  retention_stopped: boolean;
}

const PREVIEW_FIELDS = ['schedule', 'tz', 'retention', 'retention_days'] as const;

export async function previewDefinition(
  ctx: AppContext,
  caller: Caller,
  target: DefineTarget,
  data: Readonly<Record<string, unknown>>,
): Promise<PreviewObject> {
  const def = target.define!;
  // Only the four fields a preview can change, validated with the definition's own rules.
  const all = updatableRules(caller, target.vm);
  // In the definition's field order, so errors come in the order PUT gives them.
  const rules = Object.fromEntries(Object.entries(all).filter(([k]) => (PREVIEW_FIELDS as readonly string[]).includes(k)));
  const input: Record<string, unknown> = {};
  for (const k of PREVIEW_FIELDS) if (Object.prototype.hasOwnProperty.call(data, k)) input[k] = lastValue(data[k]);
  const v = validateDefine(input, rules, true);

  const schedule = v.schedule ?? def.schedule;
  const tz = v.tz ?? def.tz;
  const retention = v.retention ?? def.retention;
  const retentionDays = v.retention_days !== undefined ? v.retention_days : def.retention_days;
  const now = ctx.clock.now();

  const runs: PreviewRun[] = [];
  for (let at: Date | null = now; runs.length < PREVIEW_RUNS; ) {
    at = nextSlot(schedule, tz, at);
    if (at === null) break;
    runs.push({ utc: formatDanubeTime(at), local: formatInZone(at, tz) });
  }
  const plan = planRetention(
    await retentionInput(ctx, def.id, def.disk_real_id),
    { retention, retentionDays, lastRunFailed: def.last_error !== null },
    now,
  );
  return {
    hostname: target.vm.hostname,
    name: def.name,
    disk_id: target.disks.indexOf(target.disk) + 1,
    active: def.active === 1,
    schedule,
    tz,
    retention,
    retention_days: retentionDays,
    next_runs: runs,
    retention_delete: plan.destroy.map((s) => s.name),
    retention_stopped: plan.stopped,
  };
}

const zoneFormats = new Map<string, Intl.DateTimeFormat>();

/**
 * ISO-8601 local time of `d` in `tz` with the zone's offset at that instant.
 *
 * @example formatInZone(new Date('2026-03-29T01:00:00Z'), 'Europe/Bratislava') === '2026-03-29T03:00:00+02:00'
 */
export function formatInZone(d: Date, tz: string): string {
  let f = zoneFormats.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      timeZoneName: 'longOffset',
    });
    zoneFormats.set(tz, f);
  }
  const p = Object.fromEntries(f.formatToParts(d).map((x) => [x.type, x.value]));
  const m = /GMT(?:([+-])(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?)?$/.exec(p['timeZoneName'] ?? '');
  let offset = '+00:00';
  if (m?.[1]) offset = `${m[1]}${m[2]!.padStart(2, '0')}:${m[3] ?? '00'}${m[4] ? `:${m[4]}` : ''}`;
  return `${p['year']}-${p['month']}-${p['day']}T${p['hour']}:${p['minute']}:${p['second']}${offset}`;
}
