/**
 * Schedules that died silently: a definition is stale when no automatic snapshot of it succeeded
 * within two periods (slot-plan.ts `isStale`). The state of every definition, with its labels, is
 * read here for the metrics at scrape time and for the "definition stale" alert.
 */
import type { Kysely } from 'kysely';
import type { AppContext } from '../app-context.js';
import type { Database } from '../db/schema.js';
import { alerts } from '../alerts/alert.messages.js';
import { isStale, latestSlots } from './slot-plan.js';
import type { AutomationServices, DefineLabels } from './services.js';

export interface DefinitionStatus {
  readonly id: number;
  readonly labels: DefineLabels;
  readonly active: boolean;
  readonly lastSuccess: string | null;
  readonly stale: boolean;
}

/**
 * The last two slots at `now` of a schedule in a zone, computed once per distinct (schedule, zone)
 * for one read: many definitions share a schedule.
 */
function latestSlotsOnce(now: Date): (schedule: string, tz: string) => Date[] {
  const cache = new Map<string, Date[]>();
  return (schedule, tz) => {
    const key = `${tz}\u0000${schedule}`;
    let slots = cache.get(key);
    if (slots === undefined) {
      try {
        slots = latestSlots(schedule, tz, now, 2);
      } catch {
        slots = []; // an unreadable schedule never fires; the tick reports it
      }
      cache.set(key, slots);
    }
    return slots;
  };
}

/** Every definition with its labels and staleness at `now`. Slots are computed once per distinct schedule. */
export async function definitionStatuses(db: Kysely<Database>, now: Date): Promise<DefinitionStatus[]> {
  const rows = await db
    .selectFrom('snapshot_define as d')
    .innerJoin('vm', 'vm.uuid', 'd.vm_uuid')
    .select(['d.id', 'd.name', 'd.vm_uuid', 'd.disk_real_id', 'd.active', 'd.schedule', 'd.tz', 'd.last_success', 'd.created', 'vm.hostname'])
    .orderBy('d.id')
    .execute();
  const disks = await db.selectFrom('vm_disk').select(['vm_uuid', 'real_id']).orderBy('vm_uuid').orderBy('real_id').execute();
  const byVm = new Map<string, number[]>();
  for (const d of disks) {
    const list = byVm.get(d.vm_uuid);
    if (list) list.push(d.real_id);
    else byVm.set(d.vm_uuid, [d.real_id]);
  }
  const slotsOf = latestSlotsOnce(now);
  const out: DefinitionStatus[] = [];
  for (const r of rows) {
    const slots = slotsOf(r.schedule, r.tz);
    const active = r.active === 1;
    out.push({
      id: r.id,
      labels: { vm: r.hostname, disk: (byVm.get(r.vm_uuid) ?? []).indexOf(r.disk_real_id) + 1, define: r.name },
      active,
      lastSuccess: r.last_success,
      stale: isStale({ active, schedule: r.schedule, tz: r.tz, lastSuccess: r.last_success, created: r.created }, now, slots),
    });
  }
  return out;
}

export interface StaleState {
  /** Definitions alerted as stale and not yet recovered (alert once per episode). */
  readonly alerted: Set<number>;
}

/** Ids of the active definitions that are stale at `now` (a lean read: no joins, no labels). */
export async function staleDefinitionIds(db: Kysely<Database>, now: Date): Promise<Set<number>> {
  const rows = await db
    .selectFrom('snapshot_define')
    .select(['id', 'schedule', 'tz', 'last_success', 'created'])
    .where('active', '=', 1)
    .where('next_run', 'is not', null)
    .execute();
  const slotsOf = latestSlotsOnce(now);
  const out = new Set<number>();
  for (const r of rows) {
    const slots = slotsOf(r.schedule, r.tz);
    if (isStale({ active: true, schedule: r.schedule, tz: r.tz, lastSuccess: r.last_success, created: r.created }, now, slots)) out.add(r.id);
  }
  return out;
}

/** Alerts definitions that became stale; forgets those that recovered or are gone. Returns the alerts sent. */
export async function checkStale(ctx: AppContext, services: AutomationServices, state: StaleState): Promise<number> {
  const staleNow = await staleDefinitionIds(ctx.db, ctx.clock.now());
  for (const id of [...state.alerted]) if (!staleNow.has(id)) state.alerted.delete(id);
  const fresh = new Set([...staleNow].filter((id) => !state.alerted.has(id)));
  if (fresh.size === 0) return 0;
  // Labels only when an alert is due (rare): the full read joins VMs and disks.
  const statuses = (await definitionStatuses(ctx.db, ctx.clock.now())).filter((s) => fresh.has(s.id) && s.stale);
  for (const s of statuses) {
    state.alerted.add(s.id);
    services.alerts.send(alerts.stale(s.labels.vm, s.labels.disk, s.labels.define, s.lastSuccess));
  }
  return statuses.length;
}
