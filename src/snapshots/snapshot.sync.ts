/**
 * Sync of snapshot rows with storage: per VM disk (PUT /vm/<vm>/snapshot), per node storage
 * (PUT /node/<n>/storage/<s>/snapshot), and after crash repair. The agent lists; the completion
 * applies the pure plan of src/domain/sync.ts.
 */
import type { Transaction } from 'kysely';
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import type { Database, NodeRow, NodeStorageRow, TaskRow } from '../db/schema.js';
import { planSync, syncMessage, type SyncListed } from '../domain/sync.js';
import type { AgentPayload, ListData, ListResult } from '../agent/payloads.js';
import { setDamageByPath } from '../vms/disk.damage.js';
import { logDetail } from '../tasks/task-log.js';
import type { TaskType } from '../domain/taskid.js';
import { hasPendingSnapshotTask, zfsName } from './snapshot.repository.js';
import { diskLockKey, diskRef, loadStorageAndNode, logObject, systemCaller, type DiskTarget } from './snapshot.context.js';
import { vmDisks } from '../vms/vm.lookup.js';
import { clearDiscards, createDiscards, pendingDiscards, recordDiscards } from './snapshot.discard.js';
import type { RollbackContext } from './snapshot.rollback.js';

export interface SyncDisk {
  readonly vmUuid: string;
  readonly realId: number;
  readonly path: string;
}

export interface SyncContext {
  readonly storageId: number;
  readonly disks: SyncDisk[];
  /** VM-level sync recreates rows for unknown es-/as- snapshots; node-level does not (spec 10.4). */
  readonly recreate: boolean;
  /**
   * Snapshot ids (es-/as-) by disk path that a delete ended FAILURE was destroying: those gone from
   * storage lose their row instead of turning lost (see resyncAfterRepair). Absent in older tasks.
   */
  readonly forget?: Readonly<Record<string, readonly string[]>>;
  /**
   * The pending discards (snapshot.discard.ts) this sync's agent destroys before listing, by disk
   * path: their rows go in the completion. Absent in older tasks.
   */
  readonly discarded?: Readonly<Record<string, readonly string[]>>;
}

/**
 * The disk's pending discards (snapshot.discard.ts) are destroyed by the agent before it lists;
 * `forget`: snapshot ids whose rows go when they are gone from storage (see resyncAfterRepair).
 */
export async function submitVmSync(ctx: AppContext, caller: Caller, t: DiskTarget, type: TaskType = 'e', forget: readonly string[] = []): Promise<string> {
  return ctx.tasks.submit<SyncContext>({
    kind: 'snapshot_sync',
    type,
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: t.vm.owner_id,
    dcId: t.vm.dc_id,
    dcBound: true,
    vmUuid: t.vm.uuid,
    node: { id: t.node.id, hostname: t.node.hostname },
    locks: [diskLockKey(t.vm.uuid, t.disk.real_id)],
    apiview: { view: 'vm_snapshot_list', method: 'PUT', hostname: t.vm.hostname, disk_id: t.diskArrayId },
    log: { msg: "Synchronize snapshots of server's disk", detail: logDetail([['disk_id', t.diskArrayId]]), object: logObject(t.vm) },
    prepare: async (trx) => {
      const discard = Object.fromEntries(await pendingDiscards(trx, t.vm.uuid, [t.disk.path]));
      const any = Object.keys(discard).length > 0;
      const payload: AgentPayload = { op: 'list', storage: t.storage.name, disks: [diskRef(t.vm, t.disk)], ...(any ? { discard } : {}) };
      return {
        payload,
        context: {
          storageId: t.storage.id,
          disks: [{ vmUuid: t.vm.uuid, realId: t.disk.real_id, path: t.disk.path }],
          recreate: true,
          ...(forget.length > 0 ? { forget: { [t.disk.path]: forget } } : {}),
          ...(any ? { discarded: discard } : {}),
        },
      };
    },
  });
}

export async function submitNodeSync(ctx: AppContext, caller: Caller, node: NodeRow, storage: NodeStorageRow): Promise<string> {
  const disks = await ctx.db.selectFrom('vm_disk').selectAll().where('storage_id', '=', storage.id).orderBy('id').execute();
  return ctx.tasks.submit<SyncContext>({
    kind: 'snapshot_node_sync',
    type: 'e',
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: caller.user.id,
    dcId: caller.dc.id,
    dcBound: false,
    vmUuid: null,
    node: { id: node.id, hostname: node.hostname },
    locks: [`node_vm_snapshot_list ${storage.id}`],
    apiview: { view: 'node_vm_snapshot_list', method: 'PUT', hostname: node.hostname, zpool: storage.name },
    log: {
      msg: 'Synchronize server snapshots on node storage',
      detail: '',
      object: { type: 'nodestorage', name: `${storage.name}@${node.hostname}`, alias: storage.name, pk: String(storage.id) },
    },
    prepare: async (trx) => {
      // Disk paths are unique on a storage, so the discards of all its VMs share one map.
      const discard: Record<string, string[]> = {};
      const rows = await trx
        .selectFrom('snapshot_discard as x')
        .innerJoin('vm_disk as d', (j) => j.onRef('d.vm_uuid', '=', 'x.vm_uuid').onRef('d.path', '=', 'x.disk_path'))
        .select(['x.disk_path', 'x.snapshot'])
        .where('d.storage_id', '=', storage.id)
        .orderBy('x.snapshot')
        .execute();
      for (const r of rows) (discard[r.disk_path] ??= []).push(r.snapshot);
      const any = rows.length > 0;
      const payload: AgentPayload = { op: 'list', storage: storage.name, disks: disks.map((d) => ({ path: d.path })), ...(any ? { discard } : {}) };
      return {
        payload,
        context: {
          storageId: storage.id,
          disks: disks.map((d) => ({ vmUuid: d.vm_uuid, realId: d.real_id, path: d.path })),
          recreate: false,
          ...(any ? { discarded: discard } : {}),
        },
      };
    },
  });
}

/** Applies a listing to the rows of each disk; returns the lost and found counts. */
export async function applySync(
  trx: Transaction<Database>,
  task: TaskRow,
  c: SyncContext,
  result: Partial<ListResult>,
  now: string,
): Promise<{ lost: number; found: number }> {
  let lost = 0;
  let found = 0;
  const data: ListData = result.snapshots ?? {};
  for (const d of c.disks) {
    // The image's state, as found: flags a damaged disk, clears a disk found whole again.
    const damage = result.damage?.[d.path];
    if (damage !== undefined) await setDamageByPath(trx, d.vmUuid, d.path, damage);
    const listed: SyncListed[] | null | undefined = data[d.path];
    // A disk whose image is gone has no snapshots either: its rows become lost.
    const snaps = listed ?? [];
    let rows = await trx
      .selectFrom('snapshot')
      .select(['id', 'type', 'status', 'size'])
      .where('vm_uuid', '=', d.vmUuid)
      .where('disk_real_id', '=', d.realId)
      .execute();
    // A destroy cut off after storage had done it is finished here: its rows go, not lost.
    const forget = new Set(c.forget?.[d.path] ?? []);
    if (forget.size > 0) {
      const there = new Set(snaps.map((l) => l.id));
      const gone = rows.filter((r) => forget.has(zfsName(r)) && !there.has(zfsName(r))).map((r) => r.id);
      if (gone.length > 0) {
        await trx.deleteFrom('snapshot').where('id', 'in', gone).execute();
        rows = rows.filter((r) => !gone.includes(r.id));
      }
    }
    // Discards this sync's agent destroyed before listing are done; any still pending (recorded
    // after this sync was prepared) must not be adopted as found below.
    await clearDiscards(trx, d.vmUuid, d.path, c.discarded?.[d.path] ?? []);
    const undiscarded = new Set((await pendingDiscards(trx, d.vmUuid, [d.path])).get(d.path) ?? []);
    const pending = await hasPendingSnapshotTask(trx, d.vmUuid, task.id);
    const plan = planSync(
      rows.map((r) => ({ id: r.id, backendId: zfsName(r), status: r.status, size: r.size === null ? null : Number(r.size) })),
      snaps,
      pending,
    );
    for (const u of plan.updates) {
      await trx
        .updateTable('snapshot')
        .set({
          ...(u.status !== undefined ? { status: u.status, status_change: now } : {}),
          ...(u.size !== undefined ? { size: u.size } : {}),
          changed: now,
        })
        .where('id', '=', u.id)
        .execute();
    }
    lost += plan.lost;
    if (!c.recreate) continue;
    for (const f of plan.found) {
      if (undiscarded.has(zfsName(f))) continue;
      const clash = await trx
        .selectFrom('snapshot')
        .select('id')
        .where((eb) =>
          eb.or([eb('id', '=', f.id), eb.and([eb('vm_uuid', '=', d.vmUuid), eb('disk_real_id', '=', d.realId), eb('name', '=', f.name)])]),
        )
        .executeTakeFirst();
      if (clash) continue; // an id or name collision is skipped, as in Danube
      await trx
        .insertInto('snapshot')
        .values({
          id: f.id,
          vm_uuid: d.vmUuid,
          define_id: null,
          name: f.name,
          type: f.type,
          status: 1,
          storage_id: c.storageId,
          size: f.size,
          note: 'Found by snapshot sync',
          fsfreeze: 0,
          pinned: 0,
          disk_real_id: d.realId,
          status_change: now,
          // Stored as toISOString() text like every other row (the list slices that shape: snapshot.list-json.ts).
          created: Number.isFinite(Date.parse(f.created)) ? new Date(f.created).toISOString() : f.created,
          changed: now,
        })
        .execute();
      found++;
    }
  }
  return { lost, found };
}

export function syncResultMessage(lost: number, found: number): string {
  return syncMessage(lost, found);
}

/**
 * After crash repair, the disks of the tasks that were cut off are re-synced, so rows match what
 * storage holds (a destroy that finished is lost). A create that ended FAILURE (cut off by a crash,
 * or finished on storage after its deadline failed it) has its snapshot ids destroyed first, by the
 * sync task on the agent, from the pending discards its failure recorded (snapshot.discard.ts):
 * its answer said "no snapshot", so nothing of it may stay or be found again (the chaos run, seed
 * 3 with 300 operations: a `disk_id: "all"` create interrupted by an agent kill answered FAILURE,
 * and the re-sync adopted the two snapshots it had made). A sync cut off in turn is run again. A delete
 * that ended FAILURE may have destroyed some of its snapshots before it was cut off (its failure
 * cleanup set their rows back to ok): the re-sync finishes it, deleting the rows of those gone from
 * storage instead of marking them lost (seed 1 with 1,000 operations, op 168: a qcow2 delete cut
 * off by an agent kill).
 */
export async function resyncAfterRepair(ctx: AppContext, failed: readonly TaskRow[]): Promise<void> {
  // Per VM disk (uuid + path) which rows its one re-sync may forget, gathered over every task
  // first, so two cut-off tasks of one disk both count.
  const forget = new Map<string, string[]>();
  const add = (m: Map<string, string[]>, key: string, ids: readonly string[]) => m.set(key, [...(m.get(key) ?? []), ...ids]);
  const targets: Array<{ vmUuid: string; paths: Set<string> }> = [];
  for (const task of failed) {
    if (!task.vm_uuid || !task.kind.startsWith('snapshot_')) continue;
    // A create names its disks in `items` (one per disk), a sync in `disks`; the other operations
    // in `disk`/`target`.
    const payload = JSON.parse(task.payload) as {
      op?: string;
      disk?: { path?: string };
      target?: { path?: string };
      items?: Array<{ disk?: { path?: string }; id?: string }>;
      disks?: Array<{ path?: string }>;
      discard?: Record<string, unknown>;
      ids?: unknown;
    };
    const now = await ctx.db.selectFrom('task').select('state').where('id', '=', task.id).executeTakeFirst();
    // Its failure completion recorded them already (snapshot.kinds.ts); a task failed before
    // migration 0012 had not.
    if (payload.op === 'create' && now?.state === 'FAILURE') await recordDiscards(ctx.db, createDiscards(task), ctx.clock.now().toISOString());
    if (payload.op === 'destroy' && now?.state === 'FAILURE' && typeof payload.disk?.path === 'string' && Array.isArray(payload.ids)) {
      add(forget, `${task.vm_uuid}/${payload.disk.path}`, payload.ids.filter((x): x is string => typeof x === 'string'));
    }
    if (payload.op === 'rollback' && now?.state === 'FAILURE') {
      // A rollback on a driver that destroys the newer snapshots (zfs), cut off after it did: the
      // snapshots it destroyed are forgotten, as its success would have done, not marked lost (the
      // chaos run, seed 1 with 10,000 operations, op 3333: three rows of a zfs disk left lost).
      const c = JSON.parse(task.context) as Partial<RollbackContext> & { sameVm?: boolean };
      const sameDisk = c.sameDisk ?? c.sameVm;
      const path = sameDisk ? payload.disk?.path : payload.target?.path;
      if (c.force && c.keepsNewer === false && typeof path === 'string' && typeof c.targetVm === 'string' && typeof c.targetDiskRealId === 'number') {
        let rows = ctx.db.selectFrom('snapshot').select(['id', 'type']).where('vm_uuid', '=', c.targetVm).where('disk_real_id', '=', c.targetDiskRealId);
        if (sameDisk && typeof c.snapshotId === 'number') rows = rows.where('id', '>', c.snapshotId);
        add(forget, `${c.targetVm}/${path}`, (await rows.execute()).map(zfsName));
      }
    }
    // A sync cut off in turn while it had discards to destroy is run again.
    const synced = payload.op === 'list' && payload.discard ? (payload.disks ?? []).map((d) => d.path) : [];
    const named = [payload.disk?.path, payload.target?.path, ...(payload.items ?? []).map((i) => i.disk?.path), ...synced];
    targets.push({ vmUuid: task.vm_uuid, paths: new Set(named.filter((p): p is string => typeof p === 'string')) });
  }
  const seen = new Set<string>();
  for (const { vmUuid, paths } of targets) {
    const vm = await ctx.db.selectFrom('vm').selectAll().where('uuid', '=', vmUuid).executeTakeFirst();
    if (!vm) continue;
    const disks = await vmDisks(ctx.db, vm.uuid);
    for (const [i, disk] of disks.entries()) {
      const key = `${vm.uuid}/${disk.path}`;
      if (!paths.has(disk.path) || seen.has(key)) continue;
      seen.add(key);
      const { storage, node } = await loadStorageAndNode(ctx.db, disk);
      const caller = await systemCaller(ctx, vm.dc_id);
      try {
        await submitVmSync(ctx, caller, { vm, disks, disk, diskArrayId: i + 1, storage, node }, 'i', forget.get(key) ?? []);
      } catch (err) {
        ctx.log.error({ err, vm: vm.hostname }, 'repair sync could not start');
      }
    }
  }
}
