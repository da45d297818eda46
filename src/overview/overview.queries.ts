/**
 * The aggregates the web UI's overview needs (esnap additions, issue 16), each a handful of
 * grouped queries whatever the number of VMs: per-VM snapshot counts and sizes, every definition's
 * protection state, nodes with their storages and the free-space floor, and the problems an
 * operator should see first. Definition states use the scheduler's own stale rule (slot-plan.ts).
 */
import type { Kysely } from 'kysely';
import type { Database, NodeStorageRow } from '../db/schema.js';
import { VM_STATUS_NAMES } from '../vms/vm.lookup.js';
import { nodeObject } from '../nodes/node.routes.js';
import { formatDanubeTime } from '../domain/time.js';
import { isStale, latestSlots } from '../scheduler/slot-plan.js';
import { freePercent } from '../snapshots/capacity.js';

/** A definition's protection state: paused, on schedule, stale (no success within two slots), failing (last run failed), or a schedule that never fires. */
export type DefineState = 'paused' | 'ok' | 'stale' | 'failing' | 'invalid';
/** A VM's: no active definition, all on schedule, some stale, some failing (the worst wins). */
export type Protection = 'none' | 'ok' | 'stale' | 'failing';

const time = (iso: string | null): string | null => (iso === null ? null : formatDanubeTime(new Date(iso)));

export interface DefineSummary {
  readonly name: string;
  readonly disk_id: number;
  readonly schedule: string;
  readonly tz: string;
  readonly active: boolean;
  readonly last_success: string | null;
  readonly last_error: string | null;
  readonly state: DefineState;
}

/**
 * A disk in the overview: array id and size in MiB; a libvirt disk (src/hypervisor/) also names its
 * target device, whether it left its domain (detached) and why it lies on no esnap storage (unmapped,
 * null when it is on one), as its disk object does.
 */
export interface DiskSummary {
  readonly disk_id: number;
  readonly size: number;
  readonly target?: string;
  readonly detached?: boolean;
  readonly unmapped?: string | null;
}

/** A VM's protection picture without its snapshot totals: enough for the problems and the attention filter. */
export interface VmState {
  readonly uuid: string;
  readonly hostname: string;
  readonly alias: string;
  readonly node: string | null;
  readonly status: string;
  /** A VM mirroring a libvirt domain: its status and disks come from libvirt. */
  readonly libvirt: boolean;
  readonly disks: DiskSummary[];
  readonly snapshots_lost: number;
  readonly definitions: DefineSummary[];
  readonly protection: Protection;
}

/** A VM in the overview's table: its state and its snapshot count and bytes (lost ones included). */
export interface VmSummary extends Omit<VmState, 'uuid'> {
  readonly snapshots: number;
  readonly snapshots_size: number;
}

/** The VMs a caller sees: the DC's, only their own unless admin (as GET /vm). */
export interface Scope {
  readonly dcId: number;
  readonly ownerId: number | null;
}

/** The last two slots of each distinct (schedule, zone), computed once; [] for one that never fires. */
function slotsCache(now: Date): (schedule: string, tz: string) => Date[] | null {
  const cache = new Map<string, Date[] | null>();
  return (schedule, tz) => {
    const key = `${tz}\u0000${schedule}`;
    if (!cache.has(key)) {
      try {
        cache.set(key, latestSlots(schedule, tz, now, 2));
      } catch {
        cache.set(key, null);
      }
    }
    return cache.get(key)!;
  };
}

const WORST: Record<DefineState, number> = { paused: 0, ok: 1, stale: 2, invalid: 3, failing: 3 };


/** Needs attention: not on schedule (no definition, stale, failing) or with lost snapshots. */
export const needsAttention = (v: Pick<VmState, 'protection' | 'snapshots_lost'>): boolean => v.protection !== 'ok' || v.snapshots_lost > 0;

/**
 * Every VM the caller sees, in hostname order, with its disks, definitions' states and lost
 * snapshot count: four queries (VMs, disks, definitions, lost snapshots through the
 * (status, vm_uuid) index), none reading the VMs' other snapshots.
 */
export async function vmStates(db: Kysely<Database>, scope: Scope, now: Date): Promise<VmState[]> {
  let vq = db.selectFrom('vm').leftJoin('node', 'node.id', 'vm.node_id').select(['vm.uuid', 'vm.hostname', 'vm.alias', 'vm.status', 'vm.libvirt', 'node.hostname as node']).where('vm.dc_id', '=', scope.dcId);
  if (scope.ownerId !== null) vq = vq.where('vm.owner_id', '=', scope.ownerId);
  const vms = await vq.orderBy('vm.hostname').execute();
  if (vms.length === 0) return [];
  const inDc = db.selectFrom('vm').select('uuid').where('dc_id', '=', scope.dcId);
  const disks = await db.selectFrom('vm_disk').select(['vm_uuid', 'real_id', 'size_mb', 'libvirt_target', 'detached', 'unmapped']).where('vm_uuid', 'in', inDc).orderBy('vm_uuid').orderBy('real_id').execute();
  const lost = await db
    .selectFrom('snapshot')
    .select(['vm_uuid', (eb) => eb.fn.countAll<number | string>().as('n')])
    .where('status', '=', 4)
    .where('vm_uuid', 'in', inDc)
    .groupBy('vm_uuid')
    .execute();
  const defs = await db
    .selectFrom('snapshot_define')
    .select(['vm_uuid', 'name', 'disk_real_id', 'schedule', 'tz', 'active', 'last_success', 'last_error', 'created'])
    .where('vm_uuid', 'in', inDc)
    .orderBy('vm_uuid')
    .orderBy('name')
    .execute();

  const diskIds = new Map<string, number[]>();
  const disksOf = new Map<string, DiskSummary[]>();
  for (const d of disks) {
    const ids = diskIds.get(d.vm_uuid) ?? [];
    ids.push(d.real_id);
    diskIds.set(d.vm_uuid, ids);
    const list = disksOf.get(d.vm_uuid) ?? [];
    const base = { disk_id: ids.length, size: d.size_mb };
    list.push(d.libvirt_target === null ? base : { ...base, target: d.libvirt_target, detached: d.detached === 1, unmapped: d.unmapped });
    disksOf.set(d.vm_uuid, list);
  }
  const lostOf = new Map(lost.map((l) => [l.vm_uuid, Number(l.n)]));
  const slotsOf = slotsCache(now);
  const defsOf = new Map<string, DefineSummary[]>();
  for (const d of defs) {
    const active = d.active === 1;
    const slots = slotsOf(d.schedule, d.tz);
    let state: DefineState;
    if (!active) state = 'paused';
    else if (slots === null || slots.length === 0) state = 'invalid';
    else if (d.last_error !== null) state = 'failing';
    else state = isStale({ active, schedule: d.schedule, tz: d.tz, lastSuccess: d.last_success, created: d.created }, now, slots) ? 'stale' : 'ok';
    const list = defsOf.get(d.vm_uuid) ?? [];
    list.push({
      name: d.name,
      disk_id: (diskIds.get(d.vm_uuid) ?? []).indexOf(d.disk_real_id) + 1,
      schedule: d.schedule,
      tz: d.tz,
      active,
      last_success: time(d.last_success),
      last_error: d.last_error,
      state,
    });
    defsOf.set(d.vm_uuid, list);
  }
  return vms.map((v) => {
    const list = defsOf.get(v.uuid) ?? [];
    const worst = list.reduce((w, d) => Math.max(w, WORST[d.state]), 0);
    const protection: Protection = worst === 0 ? 'none' : worst === 1 ? 'ok' : worst === 2 ? 'stale' : 'failing';
    return {
      uuid: v.uuid,
      hostname: v.hostname,
      alias: v.alias,
      node: v.node,
      status: VM_STATUS_NAMES[v.status] ?? String(v.status),
      libvirt: v.libvirt === 1,
      disks: disksOf.get(v.uuid) ?? [],
      snapshots_lost: lostOf.get(v.uuid) ?? 0,
      definitions: list,
      protection,
    };
  });
}

/** The given VMs' summaries: their snapshot counts and bytes in one grouped query over just their rows. */
export async function withSnapshotTotals(db: Kysely<Database>, states: readonly VmState[]): Promise<VmSummary[]> {
  const counts = new Map<string, { n: number; bytes: number }>();
  for (let i = 0; i < states.length; i += 500) {
    const uuids = states.slice(i, i + 500).map((v) => v.uuid);
    const rows = await db
      .selectFrom('snapshot')
      .select(['vm_uuid', (eb) => eb.fn.countAll<number | string>().as('n'), (eb) => eb.fn.sum<number | string | null>('size').as('bytes')])
      .where('vm_uuid', 'in', uuids)
      .groupBy('vm_uuid')
      .execute();
    for (const r of rows) counts.set(r.vm_uuid, { n: Number(r.n), bytes: Number(r.bytes ?? 0) });
  }
  return states.map((v) => {
    const c = counts.get(v.uuid) ?? { n: 0, bytes: 0 };
    return {
      hostname: v.hostname,
      alias: v.alias,
      node: v.node,
      status: v.status,
      libvirt: v.libvirt,
      disks: v.disks,
      snapshots: c.n,
      snapshots_size: c.bytes,
      snapshots_lost: v.snapshots_lost,
      definitions: v.definitions,
      protection: v.protection,
    };
  });
}

/** Every VM's summary (GET /overview/vm/ without a page). */
export async function vmSummaries(db: Kysely<Database>, scope: Scope, now: Date): Promise<VmSummary[]> {
  return withSnapshotTotals(db, await vmStates(db, scope, now));
}

export interface StorageSummary {
  readonly name: string;
  readonly driver: string;
  readonly size: number | null;
  readonly size_free: number | null;
  /** Free share in percent (null while the size is unknown). */
  readonly free_percent: number | null;
  readonly below_floor: boolean;
  /** Bytes of the snapshots on it now, by the day they were created (UTC, last `days` days). */
  readonly snapshot_bytes: { day: string; bytes: number }[];
}

export interface NodeSummary {
  readonly hostname: string;
  readonly status: number;
  readonly status_display: string;
  readonly last_heartbeat: string | null;
  readonly storages: StorageSummary[];
}

/**
 * Cumulative bytes of today's snapshot rows by creation day: esnap keeps no metric history, so the
 * curve shows what exists now by age (deleted snapshots are gone from it).
 */
function dailyCumulative(rows: { day: string; bytes: number }[], now: Date, days: number): { day: string; bytes: number }[] {
  const first = new Date(now.getTime() - (days - 1) * 86_400_000).toISOString().slice(0, 10);
  let running = 0;
  const perDay = new Map<string, number>();
  for (const r of rows) {
    if (r.day < first) running += r.bytes;
    else perDay.set(r.day, (perDay.get(r.day) ?? 0) + r.bytes);
  }
  const out: { day: string; bytes: number }[] = [];
  for (let i = days - 1; i >= 0; i--) {
    const day = new Date(now.getTime() - i * 86_400_000).toISOString().slice(0, 10);
    running += perDay.get(day) ?? 0;
    out.push({ day, bytes: running });
  }
  return out;
}

export async function nodeSummaries(
  db: Kysely<Database>,
  floor: number,
  now: Date,
  /** Days of snapshot bytes per storage; 0 skips that (the only part that reads every snapshot row). */
  days: number,
): Promise<NodeSummary[]> {
  const nodes = await db.selectFrom('node').selectAll().orderBy('hostname').execute();
  const storages = await db.selectFrom('node_storage').selectAll().orderBy('name').execute();
  const perDay = days === 0 ? [] : await db
    .selectFrom('snapshot')
    .select(['storage_id', (eb) => eb.fn<string>('substr', ['created', eb.lit(1), eb.lit(10)]).as('day'), (eb) => eb.fn.sum<number | string | null>('size').as('bytes')])
    .groupBy(['storage_id', 'day'])
    .execute();
  const rowsOf = new Map<number, { day: string; bytes: number }[]>();
  for (const r of perDay) {
    const list = rowsOf.get(r.storage_id) ?? [];
    list.push({ day: String(r.day), bytes: Number(r.bytes ?? 0) });
    rowsOf.set(r.storage_id, list);
  }
  const storage = (s: NodeStorageRow): StorageSummary => {
    const free = freePercent(s);
    return {
      name: s.name,
      driver: s.driver,
      size: s.size === null ? null : Number(s.size),
      size_free: s.size_free === null ? null : Number(s.size_free),
      free_percent: free,
      below_floor: floor > 0 && free !== null && free < floor,
      snapshot_bytes: days === 0 ? [] : dailyCumulative(rowsOf.get(s.id) ?? [], now, days),
    };
  };
  return nodes.map((n) => ({
    hostname: n.hostname,
    status: n.status,
    status_display: String(nodeObject(n)['status_display']),
    last_heartbeat: time(n.last_heartbeat),
    storages: storages.filter((s) => s.node_id === n.id).map(storage),
  }));
}

export interface Problem {
  /** definition_failing, definition_stale, schedule_invalid, snapshot_lost, backup_failing, backup_lost, backup_damaged, node_unreachable, storage_low */
  readonly kind: string;
  readonly severity: 'bad' | 'warn';
  readonly message: string;
  readonly vm?: string;
  readonly disk_id?: number;
  readonly define?: string;
  readonly node?: string;
  readonly storage?: string;
  readonly count?: number;
}

/** Backups that need attention, per VM the caller sees: definitions whose last run failed, lost or damaged backups. */
export interface BackupTrouble {
  readonly failing: { vm: string; name: string; disk_id: number; last_error: string }[];
  readonly bad: { vm: string; status: number; count: number }[];
}

/**
 * Two queries on the backup tables (issue 15): active backup definitions whose last run failed, and
 * the count of lost (4) and damaged (5) backups per VM, both for the VMs the caller sees (backups
 * whose VM is gone are listed on the backup pages, not here).
 */
export async function backupTrouble(db: Kysely<Database>, scope: Scope, states: readonly Pick<VmState, 'uuid' | 'hostname'>[]): Promise<BackupTrouble> {
  if (states.length === 0) return { failing: [], bad: [] };
  const hostOf = new Map(states.map((v) => [v.uuid, v.hostname]));
  let inScope = db.selectFrom('vm').select('uuid').where('dc_id', '=', scope.dcId);
  if (scope.ownerId !== null) inScope = inScope.where('owner_id', '=', scope.ownerId);
  const defs = await db
    .selectFrom('backup_define')
    .select(['vm_uuid', 'name', 'disk_real_id', 'last_error'])
    .where('active', '=', 1)
    .where('last_error', 'is not', null)
    .where('vm_uuid', 'in', inScope)
    .orderBy('vm_uuid')
    .orderBy('name')
    .execute();
  const bad = await db
    .selectFrom('backup')
    .select(['vm_uuid', 'status', (eb) => eb.fn.countAll<number | string>().as('n')])
    .where('status', 'in', [4, 5])
    .where('vm_uuid', 'in', inScope)
    .groupBy(['vm_uuid', 'status'])
    .execute();
  const disks = defs.length === 0 ? [] : await db.selectFrom('vm_disk').select(['vm_uuid', 'real_id']).where('vm_uuid', 'in', [...new Set(defs.map((d) => d.vm_uuid))]).orderBy('real_id').execute();
  const diskId = (vm: string, realId: number): number => disks.filter((d) => d.vm_uuid === vm).findIndex((d) => d.real_id === realId) + 1;
  return {
    failing: defs.filter((d) => hostOf.has(d.vm_uuid)).map((d) => ({ vm: hostOf.get(d.vm_uuid)!, name: d.name, disk_id: diskId(d.vm_uuid, d.disk_real_id), last_error: d.last_error ?? '' })),
    bad: bad.filter((b) => b.vm_uuid !== null && hostOf.has(b.vm_uuid)).map((b) => ({ vm: hostOf.get(b.vm_uuid!)!, status: b.status, count: Number(b.n) })),
  };
}

/** `2026-12-05 22:22 UTC` from a Danube time (`2026-12-05T22:22:43.445000Z`). */
const readable = (danubeTime: string): string => `${danubeTime.slice(0, 10)} ${danubeTime.slice(11, 16)} UTC`;

/** Problems first by severity, then in VM/node order; the VM list and nodes are the already-scoped summaries. */
export function problemsOf(
  vms: readonly Pick<VmState, 'hostname' | 'definitions' | 'snapshots_lost'>[],
  nodes: readonly NodeSummary[],
  floor: number,
  backups: BackupTrouble = { failing: [], bad: [] },
): Problem[] {
  const out: Problem[] = [];
  for (const v of vms) {
    for (const d of v.definitions) {
      const where = { vm: v.hostname, disk_id: d.disk_id, define: d.name };
      if (d.state === 'failing') out.push({ kind: 'definition_failing', severity: 'bad', message: `Definition ${d.name} of ${v.hostname} (disk ${d.disk_id}) failed: ${d.last_error ?? ''}`.trim(), ...where });
      else if (d.state === 'stale') out.push({ kind: 'definition_stale', severity: 'bad', message: `Definition ${d.name} of ${v.hostname} (disk ${d.disk_id}) is stale: no successful snapshot since ${d.last_success === null ? 'it was created' : readable(d.last_success)}`, ...where });
      else if (d.state === 'invalid') out.push({ kind: 'schedule_invalid', severity: 'bad', message: `Definition ${d.name} of ${v.hostname} (disk ${d.disk_id}) has a schedule that never fires: ${d.schedule}`, ...where });
    }
    if (v.snapshots_lost > 0) {
      const n = v.snapshots_lost;
      out.push({ kind: 'snapshot_lost', severity: 'bad', message: `${n} snapshot${n === 1 ? '' : 's'} of ${v.hostname} lost (gone from storage)`, vm: v.hostname, count: n });
    }
  }
  for (const d of backups.failing) {
    out.push({ kind: 'backup_failing', severity: 'bad', message: `Backup definition ${d.name} of ${d.vm} (disk ${d.disk_id}) failed: ${d.last_error}`.trim(), vm: d.vm, disk_id: d.disk_id, define: d.name });
  }
  for (const b of backups.bad) {
    const what = b.status === 4 ? 'lost (gone from the backup storage)' : `damaged (${b.count === 1 ? 'its data no longer matches its' : 'their data no longer matches their'} checksum)`;
    out.push({ kind: b.status === 4 ? 'backup_lost' : 'backup_damaged', severity: 'bad', message: `${b.count} backup${b.count === 1 ? '' : 's'} of ${b.vm} ${what}`, vm: b.vm, count: b.count });
  }
  for (const n of nodes) {
    if (n.status !== 2) out.push({ kind: 'node_unreachable', severity: n.status === 1 ? 'warn' : 'bad', message: `Node ${n.hostname} is ${n.status_display}`, node: n.hostname });
    for (const s of n.storages) {
      if (s.below_floor) {
        out.push({
          kind: 'storage_low',
          severity: 'bad',
          message: `Storage ${s.name} on ${n.hostname} has ${(s.free_percent ?? 0).toFixed(1)} % free, below the ${floor} % floor: new snapshots are refused`,
          node: n.hostname,
          storage: s.name,
        });
      }
    }
  }
  return out.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'bad' ? -1 : 1));
}
