/**
 * Aggregate views for the web UI's overview (esnap additions, not in Danube's API): problems, a
 * summary per VM, nodes with storage usage and the free-space floor, and a VM's snapshot timeline.
 * They answer in a few grouped queries what the UI would otherwise read VM by VM. Like every view
 * they need credentials; VM data is the caller's DC, and only their own VMs unless admin.
 */
import type { ViewDef, ViewRequest } from '../http/view.js';
import { FailureError } from '../domain/errors.js';
import { formatDanubeTime } from '../domain/time.js';
import { parseBool, parseIntField } from '../domain/validate.js';
import { findVm, vmDisks } from '../vms/vm.lookup.js';
import { backupObject } from '../backups/backup.output.js';
import { listBackups } from '../backups/backup.repository.js';
import { backupSettings } from '../backups/backup.settings.js';
import { backupTrouble, needsAttention, nodeSummaries, problemsOf, vmStates, withSnapshotTotals, type Scope, type VmState, type VmSummary } from './overview.queries.js';

const scopeOf = (req: ViewRequest): Scope => ({ dcId: req.caller.dc.id, ownerId: req.caller.isAdmin ? null : req.caller.user.id });

/** `days` of the history views: 1–90 (0 too where `zero` allows leaving the history out), default `dflt`. */
function daysOf(req: ViewRequest, dflt: number, zero = false): number {
  const raw = req.data['days'];
  if (raw === undefined) return dflt;
  const n = parseIntField(raw);
  const min = zero ? 0 : 1;
  if (n === null || n < min || n > 90) throw new FailureError({ days: [`Ensure this value is between ${min} and 90.`] });
  return n;
}

/** An optional non-negative integer query field (`limit` at least 1). */
function countOf(req: ViewRequest, field: 'limit' | 'offset'): number | undefined {
  const raw = req.data[field];
  if (raw === undefined) return undefined;
  const n = parseIntField(raw);
  const min = field === 'limit' ? 1 : 0;
  if (n === null || n < min || n > 1_000_000) throw new FailureError({ [field]: [`Ensure this value is between ${min} and 1000000.`] });
  return n;
}

/**
 * The VM list's page: `attention=true` keeps the VMs needing attention (not on schedule, or with
 * lost snapshots); `offset`/`limit` pick a page (all VMs without `limit`). Snapshot totals are read
 * for the page's VMs only. `count` is the length of the whole (filtered) list.
 */
async function vmPage(req: ViewRequest, states: readonly VmState[]): Promise<{ count: number; vms: VmSummary[] }> {
  const attention = req.data['attention'] === undefined ? false : parseBool(req.data['attention']);
  const offset = countOf(req, 'offset') ?? 0;
  const limit = countOf(req, 'limit');
  const list = attention ? states.filter(needsAttention) : states;
  const page = list.slice(offset, limit === undefined ? undefined : offset + limit);
  return { count: list.length, vms: await withSnapshotTotals(req.app.db, page) };
}

const problems: ViewDef = {
  path: '/overview/problems',
  name: 'overview_problems',
  description:
    'esnap addition. What needs attention in the DC: failing, stale or never-firing definitions, lost snapshots (per VM), failing backup definitions, lost or damaged backups (per VM), nodes not online, storages below the free-space floor.',
  dcBound: true,
  methods: {
    async GET(req) {
      const now = req.app.clock.now();
      const floor = req.app.capacity.minFreePercent;
      const [vms, nodes] = await Promise.all([vmStates(req.app.db, scopeOf(req), now), nodeSummaries(req.app.db, floor, now, 0)]);
      return { type: 'sync', result: problemsOf(vms, nodes, floor, await backupTrouble(req.app.db, scopeOf(req), vms)) };
    },
  },
};

const vms: ViewDef = {
  path: '/overview/vm',
  name: 'overview_vm_list',
  description:
    'esnap addition. Every VM of the DC the caller sees with alias, disks, snapshot count, size and lost count, its definitions (state, last success) and protection: none, ok, stale or failing. Optional: attention=true (only VMs not on schedule or with lost snapshots), offset and limit (a page).',
  dcBound: true,
  methods: {
    async GET(req) {
      const states = await vmStates(req.app.db, scopeOf(req), req.app.clock.now());
      return { type: 'sync', result: (await vmPage(req, states)).vms };
    },
  },
};

const nodes: ViewDef = {
  path: '/overview/node',
  name: 'overview_node_list',
  description:
    "esnap addition. Nodes with their storages: size and free bytes, free percent, the free-space floor (min_free_percent), and the bytes of today's snapshots by creation day (days, default 30).",
  dcBound: false,
  methods: {
    async GET(req) {
      const floor = req.app.capacity.minFreePercent;
      const list = await nodeSummaries(req.app.db, floor, req.app.clock.now(), daysOf(req, 30));
      return { type: 'sync', result: { min_free_percent: floor, nodes: list } };
    },
  },
};

const timeline: ViewDef = {
  path: '/overview/vm/:hostname_or_uuid/timeline',
  name: 'overview_vm_timeline',
  description:
    "esnap addition. A VM's snapshots and backups of the last days (days, default 7) and its definitions' skipped and failed scheduled slots (those of backup definitions with backup: true), for a timeline per disk and definition.",
  dcBound: true,
  methods: {
    async GET(req) {
      const days = daysOf(req, 7);
      const vm = await findVm(req.app.db, req.caller, req.params['hostname_or_uuid'] ?? '');
      const now = req.app.clock.now();
      const since = new Date(now.getTime() - days * 86_400_000).toISOString();
      const disks = await vmDisks(req.app.db, vm.uuid);
      const diskId = (realId: number): number => disks.findIndex((d) => d.real_id === realId) + 1;
      const defs = await req.app.db.selectFrom('snapshot_define').select(['id', 'name', 'disk_real_id']).where('vm_uuid', '=', vm.uuid).execute();
      const defName = new Map(defs.map((d) => [d.id, d]));
      const snaps = await req.app.db
        .selectFrom('snapshot')
        .select(['name', 'disk_real_id', 'define_id', 'type', 'status', 'created', 'size'])
        .where('vm_uuid', '=', vm.uuid)
        .where('created', '>=', since)
        .orderBy('created')
        .execute();
      const bkpdefs = await req.app.db.selectFrom('backup_define').select(['id', 'name', 'disk_real_id']).where('vm_uuid', '=', vm.uuid).execute();
      const bkpdefName = new Map(bkpdefs.map((d) => [d.id, d.name]));
      const bkpdefById = new Map(bkpdefs.map((d) => [d.id, d]));
      const backupSlots =
        bkpdefs.length === 0
          ? []
          : await req.app.db
              .selectFrom('backup_slot')
              .select(['define_id', 'slot', 'state', 'reason'])
              .where('define_id', 'in', bkpdefs.map((d) => d.id))
              .where('state', 'in', ['skipped', 'failed'])
              .where('slot', '>=', since)
              .orderBy('slot')
              .execute();
      const backups = await req.app.db
        .selectFrom('backup')
        .select(['name', 'vm_disk_id', 'define_id', 'status', 'created', 'size'])
        .where('vm_uuid', '=', vm.uuid)
        .where('created', '>=', since)
        .orderBy('created')
        .execute();
      const slots =
        defs.length === 0
          ? []
          : await req.app.db
              .selectFrom('schedule_slot')
              .select(['define_id', 'slot', 'state', 'reason'])
              .where('define_id', 'in', defs.map((d) => d.id))
              .where('state', 'in', ['skipped', 'failed'])
              .where('slot', '>=', since)
              .orderBy('slot')
              .execute();
      return {
        type: 'sync',
        result: {
          hostname: vm.hostname,
          from: formatDanubeTime(new Date(since)),
          to: formatDanubeTime(now),
          snapshots: snaps.map((s) => ({
            name: s.name,
            disk_id: diskId(s.disk_real_id),
            define: s.define_id === null ? null : (defName.get(s.define_id)?.name ?? null),
            type: s.type,
            status: s.status,
            created: formatDanubeTime(new Date(s.created)),
            size: s.size === null ? null : Number(s.size),
          })),
          backups: backups.map((b) => ({
            name: b.name,
            disk_id: b.vm_disk_id,
            define: b.define_id === null ? null : (bkpdefName.get(b.define_id) ?? null),
            status: b.status,
            created: formatDanubeTime(new Date(b.created)),
            size: b.size === null ? null : Number(b.size),
          })),
          runs: [
            ...slots.map((r) => {
              const d = defName.get(r.define_id);
              return { define: d?.name ?? null, disk_id: d ? diskId(d.disk_real_id) : 0, slot: formatDanubeTime(new Date(r.slot)), state: r.state, reason: r.reason };
            }),
            // The backup scheduler's skipped and failed slots (backup_slot), marked `backup: true`.
            ...backupSlots.map((r) => {
              const d = bkpdefById.get(r.define_id);
              return { define: d?.name ?? null, disk_id: d ? diskId(d.disk_real_id) : 0, slot: formatDanubeTime(new Date(r.slot)), state: r.state, reason: r.reason, backup: true };
            }),
          ],
        },
      };
    },
  },
};

const backups: ViewDef = {
  path: '/overview/backup',
  name: 'overview_backup_list',
  description:
    "esnap addition. Every backup of the DC the caller sees, newest first, as GET /vm/<vm>/backup/?full=true answers them: an admin's list includes the backups of deleted VMs (vm null), others see their own VMs' only. Empty when backups are disabled in the DC.",
  dcBound: true,
  methods: {
    async GET(req) {
      if (!backupSettings(req.caller.dc).VMS_VM_BACKUP_ENABLED) return { type: 'sync', result: [] };
      const scope = { dcId: req.caller.dc.id, ...(req.caller.isAdmin ? {} : { ownerId: req.caller.user.id }) };
      const rows = await listBackups(req.app.db, scope, [{ field: 'created', desc: true }]);
      return { type: 'sync', result: rows.map((r) => backupObject(r, req.caller.isAdmin, false)) };
    },
  },
};

const all: ViewDef = {
  path: '/overview',
  name: 'overview',
  description:
    'esnap addition. The three overview answers in one, computed once: {problems, vms, vm_count, nodes} as GET /overview/problems/, /overview/vm/ (with its attention, offset and limit; vm_count counts the whole filtered list) and /overview/node/ (days, default 30; 0 leaves snapshot_bytes empty) answer them.',
  dcBound: true,
  methods: {
    async GET(req) {
      const now = req.app.clock.now();
      const floor = req.app.capacity.minFreePercent;
      const states = await vmStates(req.app.db, scopeOf(req), now);
      const nodeList = await nodeSummaries(req.app.db, floor, now, daysOf(req, 30, true));
      const page = await vmPage(req, states);
      const backups = await backupTrouble(req.app.db, scopeOf(req), states);
      return { type: 'sync', result: { problems: problemsOf(states, nodeList, floor, backups), vms: page.vms, vm_count: page.count, nodes: { min_free_percent: floor, nodes: nodeList } } };
    },
  },
};

export const overviewViews: ViewDef[] = [all, problems, vms, nodes, timeline, backups];
