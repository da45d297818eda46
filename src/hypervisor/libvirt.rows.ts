/**
 * The server's side of libvirt discovery: a node's full domain inventory (libvirt.inventory.ts)
 * becomes VM and disk rows. Rules (issue 14, README "On a libvirt host"):
 *
 * - A domain is a VM with uuid = its uuid, hostname = its name, alias = its title when it is a
 *   valid alias. A name esnap cannot take as a hostname is skipped with a warning, never mangled.
 * - A domain whose uuid or name is already a VM that is not this node's libvirt VM (registered
 *   through the API, or a domain of another node) is not merged: it is skipped and reported as a
 *   conflict until resolved.
 * - Disks are identified by target device and source path together: anything else (a new source,
 *   a re-attach elsewhere) is a new disk. A disk that left its domain keeps its snapshots and is
 *   listed as detached; one without snapshots or definitions simply goes.
 * - A domain that is no longer defined keeps its VM (status `notcreated`) and snapshots until an
 *   admin deletes the VM. esnap never undefines a domain nor deletes its images on its own.
 *
 * Changed domains are written in groups, one transaction per group (each domain whole or not at
 * all); a group that fails is written again one domain per transaction, so one bad domain does
 * not hold back the rest.
 */
import type { Kysely, Transaction } from 'kysely';
import type { AppContext } from '../app-context.js';
import type { Database, VmDiskRow, VmRow } from '../db/schema.js';
import { HOSTNAME_MAX, HOSTNAME_RE, VM_NOTREADY, VM_RUNNING, VM_STOPPED, VM_STOPPING } from '../domain/vm.js';
import { insertVm, newVmRow } from '../db/vm-rows.js';
import { NO_STORAGE_ID, statusOfState } from './libvirt.domains.js';
import type { DomainInventory, DomainReport } from './libvirt.inventory.js';
import type { MappedDisk } from './disk-mapping.js';
import { logSkipChanges, skipSummary, type DomainConflict, type SkipSummary } from './libvirt.skips.js';

export type { DomainConflict } from './libvirt.skips.js';

export const VM_NOTCREATED = 9;
const DEFAULT_DC = 'main';
const ADMIN_ID = 1;

const STATUS: Readonly<Record<string, number>> = { running: VM_RUNNING, stopping: VM_STOPPING, stopped: VM_STOPPED };

export interface ApplyResult {
  readonly applied: number;
  readonly conflicts: readonly DomainConflict[];
  /** The node's skip list differs from the one before this inventory. */
  readonly changed: boolean;
  /** The inventory was older than one already applied: nothing was written. */
  readonly stale: boolean;
}

type Trx = Transaction<Database>;

/** Latest conflicts per node, for /readyz and the logs (this process's view). */
export const libvirtConflicts = new Map<string, readonly DomainConflict[]>();
const lastApplied = new Map<string, string>();
/** Changed domains written per transaction. */
const APPLY_GROUP = 25;

/**
 * For /readyz: the domains skipped in the latest inventory of each node this process applied,
 * counted by reason (`skipped_domains`, `skipped`); null when it applied none. A conflict does not
 * make the process unready; it stays listed until resolved.
 */
export function libvirtSkipSummary(): SkipSummary | null {
  if (libvirtConflicts.size === 0) return null;
  return skipSummary([...libvirtConflicts.values()].flat());
}

export async function applyInventory(ctx: AppContext, inv: DomainInventory): Promise<ApplyResult> {
  // A full inventory older than the one already applied (messages may arrive out of order) is stale.
  // Thrown, so a queue retries it: in cluster mode the inventory may overtake the registration.
  const node = await ctx.db.selectFrom('node').selectAll().where('hostname', '=', inv.node).executeTakeFirst();
  if (!node) throw new Error(`libvirt inventory of unknown node ${inv.node}`);
  const last = lastApplied.get(inv.node);
  if (last !== undefined && last > inv.at) return { applied: 0, conflicts: libvirtConflicts.get(inv.node) ?? [], changed: false, stale: true };
  lastApplied.set(inv.node, inv.at);
  const dc = await ctx.db.selectFrom('dc').selectAll().where('name', '=', inv.dc ?? DEFAULT_DC).executeTakeFirst();
  if (!dc) throw new Error(`ESNAP_LIBVIRT_DC ${inv.dc ?? DEFAULT_DC} is not a DC`);
  const storages = await ctx.db.selectFrom('node_storage').select(['id', 'name']).where('node_id', '=', node.id).execute();
  const storageIds = new Map(storages.map((s) => [s.name, s.id]));
  const conflicts: DomainConflict[] = [];
  let applied = 0;
  const current = await currentRows(ctx.db, node.id);
  const place: Place = { nodeId: node.id, dcId: dc.id, ownerId: dc.owner_id ?? ADMIN_ID, storageIds };
  // Most inventories change one domain or none: the rest are compared in memory, not rewritten.
  const changed = inv.domains.filter((d) => !unchanged(d, current.get(d.uuid)));
  applied += inv.domains.length - changed.length;
  for (let i = 0; i < changed.length; i += APPLY_GROUP) {
    const group = changed.slice(i, i + APPLY_GROUP);
    // A group of domains per transaction (a discovery of hundreds costs a few commits); a group
    // that fails is applied again one domain per transaction, so one bad domain holds back no other.
    const reasons = await ctx.db
      .transaction()
      .execute(async (trx) => {
        const out: Array<string | null> = [];
        for (const d of group) out.push(await applyDomain(trx, ctx, d, place));
        return out;
      })
      .catch(async () => {
        const out: Array<string | null> = [];
        for (const d of group) out.push(await ctx.db.transaction().execute((trx) => applyDomain(trx, ctx, d, place)));
        return out;
      });
    group.forEach((d, k) => {
      const reason = reasons[k]!;
      if (reason === null) applied++;
      else conflicts.push({ uuid: d.uuid, name: d.name, reason });
    });
  }
  const present = new Set(inv.partial ? (inv.present ?? []) : inv.domains.map((d) => d.uuid));
  await markVanished(ctx.db, node.id, present, ctx.clock.now().toISOString());
  const previous = libvirtConflicts.get(inv.node) ?? [];
  const before = JSON.stringify(previous);
  if (inv.partial) {
    // Only the named domains were read: the other conflicts stand, unless their domain is gone.
    const read = new Set(inv.domains.map((d) => d.uuid));
    conflicts.unshift(...previous.filter((c) => !read.has(c.uuid) && present.has(c.uuid)));
  }
  libvirtConflicts.set(inv.node, conflicts);
  const skipsChanged = JSON.stringify(conflicts) !== before;
  logSkipChanges(ctx.log, inv.node, previous, conflicts);
  return { applied, conflicts, changed: skipsChanged, stale: false };
}

interface CurrentVm {
  readonly row: Pick<VmRow, 'hostname' | 'alias' | 'status'>;
  /** Keys of the attached disks; `detached` those of the detached ones. */
  readonly attached: Set<string>;
  readonly detached: Set<string>;
  /** Keys of attached disks on no esnap storage (a later inventory may map them). */
  readonly unmapped: Set<string>;
}

/** This node's libvirt VMs and their disk keys, in two queries. */
async function currentRows(db: Kysely<Database>, nodeId: number): Promise<Map<string, CurrentVm>> {
  const vms = await db.selectFrom('vm').select(['uuid', 'hostname', 'alias', 'status']).where('node_id', '=', nodeId).where('libvirt', '=', 1).execute();
  const out = new Map<string, CurrentVm>(vms.map((v) => [v.uuid, { row: v, attached: new Set(), detached: new Set(), unmapped: new Set() }]));
  const disks = await db
    .selectFrom('vm_disk')
    .innerJoin('vm', 'vm.uuid', 'vm_disk.vm_uuid')
    .select(['vm_disk.vm_uuid', 'vm_disk.libvirt_target', 'vm_disk.libvirt_source', 'vm_disk.detached', 'vm_disk.storage_id'])
    .where('vm.node_id', '=', nodeId)
    .where('vm.libvirt', '=', 1)
    .execute();
  for (const d of disks) {
    const vm = out.get(d.vm_uuid);
    (d.detached === 1 ? vm?.detached : vm?.attached)?.add(key(d.libvirt_target, d.libvirt_source));
    if (d.detached !== 1 && d.storage_id === NO_STORAGE_ID) vm?.unmapped.add(key(d.libvirt_target, d.libvirt_source));
  }
  return out;
}

/** Whether applying the domain would write nothing (same identity, status and disks as recorded). */
function unchanged(d: DomainReport, cur: CurrentVm | undefined): boolean {
  if (!cur) return false;
  const alias = d.title !== null && d.title.length <= HOSTNAME_MAX && HOSTNAME_RE.test(d.title) ? d.title : d.name;
  const status = cur.row.status === VM_NOTREADY ? VM_NOTREADY : STATUS[statusOfState(d.state)];
  if (cur.row.hostname !== d.name || cur.row.alias !== alias || cur.row.status !== status) return false;
  const keys = new Set(d.disks.map((x) => key(x.target, x.source)));
  if (keys.size !== cur.attached.size) return false;
  for (const k of keys) if (!cur.attached.has(k)) return false;
  // A disk on no storage that now maps to one (its image made later, a storage busy at the last read).
  if (d.disks.some((x) => x.storage !== null && cur.unmapped.has(key(x.target, x.source)))) return false;
  return true;
}

interface Place {
  readonly nodeId: number;
  readonly dcId: number;
  readonly ownerId: number;
  readonly storageIds: ReadonlyMap<string, number>;
}

/** Applies one domain; returns why it was skipped, or null. */
async function applyDomain(trx: Trx, ctx: AppContext, d: DomainReport, place: Place): Promise<string | null> {
  if (d.name.length > HOSTNAME_MAX || !HOSTNAME_RE.test(d.name)) return 'name is not a valid hostname';
  const now = ctx.clock.now().toISOString();
  const byUuid = await trx.selectFrom('vm').selectAll().where('uuid', '=', d.uuid).executeTakeFirst();
  if (byUuid && (byUuid.libvirt !== 1 || byUuid.node_id !== place.nodeId)) {
    return byUuid.libvirt === 1 ? 'uuid is a domain of another node' : 'uuid is a VM registered through the API';
  }
  const byName = await trx.selectFrom('vm').select(['uuid']).where('hostname', '=', d.name).executeTakeFirst();
  if (byName && byName.uuid !== d.uuid) return 'name is already the hostname of another VM';
  const alias = d.title !== null && d.title.length <= HOSTNAME_MAX && HOSTNAME_RE.test(d.title) ? d.title : d.name;
  const status = STATUS[statusOfState(d.state)]!;
  let vm: VmRow;
  if (!byUuid) {
    const row = { uuid: d.uuid, hostname: d.name, alias, dc_id: place.dcId, owner_id: place.ownerId, node_id: place.nodeId, status, libvirt: 1 };
    vm = await insertVm(trx, newVmRow(row, now));
  } else {
    vm = byUuid;
    // notready is a rollback in progress: its end sets the status, not the inventory.
    const newStatus = vm.status === VM_NOTREADY ? vm.status : status;
    if (vm.hostname !== d.name || vm.alias !== alias || vm.status !== newStatus) {
      await trx
        .updateTable('vm')
        .set({ hostname: d.name, alias, status: newStatus, ...(newStatus !== vm.status ? { status_change: now } : {}), changed: now })
        .where('uuid', '=', vm.uuid)
        .execute();
    }
  }
  await syncDisks(trx, vm.uuid, d.disks, place.storageIds, now);
  return null;
}

function key(target: string | null, source: string | null): string {
  return `${target ?? ''}\u0000${source ?? ''}`;
}

/** The storage a mapped disk goes on, or why none. */
async function placeDisk(trx: Trx, disk: MappedDisk, storageIds: ReadonlyMap<string, number>): Promise<{ storageId: number | null; unmapped: string | null }> {
  let storageId = disk.storage !== null ? (storageIds.get(disk.storage) ?? null) : null;
  let unmapped = disk.reason;
  if (storageId !== null && disk.path !== null) {
    // One image, one disk: an image already a disk of another VM is not taken twice.
    const other = await trx.selectFrom('vm_disk').select('id').where('storage_id', '=', storageId).where('path', '=', disk.path).executeTakeFirst();
    if (other) [storageId, unmapped] = [null, 'image is already a disk of another VM'];
  } else if (storageId === null && unmapped === null) {
    unmapped = `storage ${disk.storage ?? ''} is not registered on this node`;
  }
  return { storageId, unmapped };
}

async function syncDisks(trx: Trx, vmUuid: string, disks: readonly MappedDisk[], storageIds: ReadonlyMap<string, number>, now: string): Promise<void> {
  const rows = await trx.selectFrom('vm_disk').selectAll().where('vm_uuid', '=', vmUuid).orderBy('real_id').execute();
  const byKey = new Map<string, VmDiskRow>(rows.map((r) => [key(r.libvirt_target, r.libvirt_source), r]));
  let nextRealId = rows.reduce((m, r) => Math.max(m, r.real_id), 0) + 1;
  const seen = new Set<string>();
  for (const disk of disks) {
    const k = key(disk.target, disk.source);
    seen.add(k);
    const row = byKey.get(k);
    if (row) {
      if (row.detached === 1) await trx.updateTable('vm_disk').set({ detached: 0 }).where('id', '=', row.id).execute();
      // A disk on no storage is mapped once it can be (same target and source: the same disk). A
      // mapped disk keeps its storage: a read that fails for a moment does not unmap it.
      if (row.storage_id === NO_STORAGE_ID && disk.storage !== null) {
        const { storageId } = await placeDisk(trx, disk, storageIds);
        if (storageId !== null) {
          await trx.updateTable('vm_disk').set({ storage_id: storageId, path: disk.path!, size_mb: disk.sizeMb, unmapped: null }).where('id', '=', row.id).execute();
        }
      }
      continue;
    }
    const realId = nextRealId++;
    const { storageId, unmapped } = await placeDisk(trx, disk, storageIds);
    await trx
      .insertInto('vm_disk')
      .values({
        vm_uuid: vmUuid,
        real_id: realId,
        storage_id: storageId ?? NO_STORAGE_ID,
        // Unmapped disks have no storage path; the key keeps (storage_id, path) unique.
        path: storageId !== null ? disk.path! : `libvirt:${vmUuid}:${realId}`,
        size_mb: disk.sizeMb,
        created: now,
        libvirt_target: disk.target,
        libvirt_source: disk.source,
        detached: 0,
        unmapped: storageId !== null ? null : unmapped,
      })
      .execute();
  }
  for (const row of rows) {
    if (seen.has(key(row.libvirt_target, row.libvirt_source)) || row.detached === 1) continue;
    const kept =
      (await trx.selectFrom('snapshot').select('id').where('vm_uuid', '=', vmUuid).where('disk_real_id', '=', row.real_id).executeTakeFirst()) ??
      (await trx.selectFrom('snapshot_define').select('id').where('vm_uuid', '=', vmUuid).where('disk_real_id', '=', row.real_id).executeTakeFirst());
    if (kept) await trx.updateTable('vm_disk').set({ detached: 1 }).where('id', '=', row.id).execute();
    else await trx.deleteFrom('vm_disk').where('id', '=', row.id).execute();
  }
}

/** This node's libvirt VMs whose domain is gone: `notcreated`, rows and snapshots kept. */
async function markVanished(db: Kysely<Database>, nodeId: number, present: ReadonlySet<string>, now: string): Promise<void> {
  const vms = await db.selectFrom('vm').select(['uuid', 'status']).where('node_id', '=', nodeId).where('libvirt', '=', 1).execute();
  const gone = vms.filter((v) => !present.has(v.uuid) && v.status !== VM_NOTCREATED && v.status !== VM_NOTREADY).map((v) => v.uuid);
  if (gone.length === 0) return;
  await db.updateTable('vm').set({ status: VM_NOTCREATED, status_change: now, changed: now }).where('uuid', 'in', gone).execute();
}
