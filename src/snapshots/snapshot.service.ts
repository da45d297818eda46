/**
 * Snapshot create, delete, bulk delete and the note/pin update (spec 4.4, 4.5), with Danube's
 * checks in Danube's order. Each asynchronous operation is one task whose completion lives in
 * snapshot.kinds.ts.
 */
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import { apiError, FailureError, validationFailed } from '../domain/errors.js';
import { NAME_RE, NOTE_FORBIDDEN, parseBool, validateFields } from '../domain/validate.js';
import { dcSettings } from '../accounts/dc.settings.js';
import { writeLog, logDetail } from '../tasks/task-log.js';
import { makeDummyTaskId } from '../domain/taskid.js';
import { randomUUID } from 'node:crypto';
import {
  SNAP_LOST,
  SNAP_OK,
  SNAP_PENDING,
  TYPE_AUTO,
  TYPE_MANUAL,
  countByType,
  deleteSnapshots,
  findSnapshot,
  setStatus,
  sumSizes,
  zfsName,
  type SnapshotView,
} from './snapshot.repository.js';
import { diskLockKey, diskRef, logObject, type DiskTarget } from './snapshot.context.js';
import type { AgentPayload, CreateItem } from '../agent/payloads.js';
import type { TaskSpec } from '../tasks/task.types.js';
import type { NewSnapshot } from '../db/schema.js';
import { requireOperational, VM_STOPPED } from '../vms/vm.lookup.js';
import { assertCapacity } from './capacity.js';
import { vmTask } from '../tasks/vm-task.js';

const MB = 1024 * 1024;

export interface CreateContext {
  /** One row per disk, in the payload's item order. */
  readonly snapshotIds: number[];
  readonly diskArrayIds: number[];
  readonly defineId: number | null;
  readonly fsfreeze: boolean;
  /** Whether the agent was asked to freeze (a stopped VM is consistent without it). */
  readonly freezeAsked: boolean;
  readonly name: string;
  readonly vmUuid: string;
}

export interface DeleteContext {
  readonly snapshotIds: number[];
  readonly bulk: boolean;
  readonly detail: string;
  readonly vmUuid: string;
  readonly diskArrayId: number;
  /** Whether the snapshots are automatic (alerts, retention bookkeeping). */
  readonly auto: boolean;
}

export const NOTE_RULE = { kind: 'string', max: 128, forbidden: NOTE_FORBIDDEN, nullAsEmpty: true } as const;

export interface CreateInput {
  readonly name: string;
  readonly note?: unknown;
  readonly fsfreeze?: unknown;
  readonly diskIdRaw?: unknown;
  /** esnap's `disk_id: "all"`: `diskIdRaw` is not a number to validate, whatever the VM's disk count. */
  readonly allDisks?: boolean;
  /** Set for scheduled snapshots: type automatic, task type `a`. */
  readonly defineId?: number | null;
}

/**
 * POST /vm/<vm>/snapshot/<name>: everything after the lookups (spec 4.5 steps 1–10). `targets`
 * holds one disk, or every disk of the VM for esnap's `disk_id: "all"` (one task, all or none).
 */
export async function createSnapshot(
  ctx: AppContext,
  caller: Caller,
  targets: readonly DiskTarget[],
  input: CreateInput,
): Promise<string> {
  return ctx.tasks.submit(await planCreateSnapshot(ctx, caller, targets, input));
}

/**
 * The checks of createSnapshot and the task it would submit, not yet submitted: the scheduler
 * submits many in one transaction (TaskService.submitManyIn). Throws what createSnapshot throws.
 */
export async function planCreateSnapshot(
  ctx: AppContext,
  caller: Caller,
  targets: readonly DiskTarget[],
  input: CreateInput,
): Promise<TaskSpec<CreateContext>> {
  const t = targets[0]!;
  const vm = t.vm;
  const auto = input.defineId !== undefined && input.defineId !== null;
  const fields = validateFields(
    { name: input.name, note: input.note, disk_id: input.allDisks === true || targets.length > 1 ? undefined : input.diskIdRaw },
    {
      name: { kind: 'string', required: true, min: 1, max: 24, pattern: NAME_RE },
      note: NOTE_RULE,
      disk_id: { kind: 'int', min: 1, max: 6 },
    },
  );
  if (!fields.ok) throw validationFailed(fields.errors);
  const note = (fields.value.note as string | undefined) ?? '';
  // fsfreeze applies only to VMs with a guest-agent socket or a libvirt domain (whose agent channel
  // libvirt owns); elsewhere it is silently ignored.
  const fsfreeze = parseBool(input.fsfreeze ?? false) && (vm.qga_socket !== null || vm.libvirt === 1);

  // A snapshot of a missing or cut-off image would later restore the breakage (src/vms/disk.damage.ts).
  if (targets.some((x) => x.disk.damaged !== null)) throw apiError('diskDamaged');

  const type = auto ? TYPE_AUTO : TYPE_MANUAL;
  const limit = auto ? vm.snapshot_limit_auto : vm.snapshot_limit_manual;
  // The count limit counts the snapshots about to be made, as Danube's GUI does for "all disks".
  if (limit !== null && (await countByType(ctx.db, vm.uuid, type)) + targets.length > limit) throw apiError('snapshotLimit');
  await checkSizeQuotas(ctx, caller, t);
  // Last of the 417s: every storage the snapshot goes to must be above the free-space floor
  // (manual, "all", run now and scheduled alike; the scheduler turns it into a skipped slot).
  assertCapacity(ctx.capacity, targets.map((x) => x.storage));

  const now = ctx.clock.now().toISOString();
  const diskIdLog: unknown = input.allDisks === true || targets.length > 1 ? 'all' : t.diskArrayId;
  const { newRows, finish } = createRows(vm, targets, input, { type, note, fsfreeze, now });
  return {
    kind: 'snapshot_create',
    ...vmTask(caller, vm, t.node, auto ? 'a' : 'e'),
    defineId: input.defineId ?? null,
    locks: targets.map((x) => diskLockKey(vm.uuid, x.disk.real_id)),
    apiview: { view: 'vm_snapshot', method: 'POST', hostname: vm.hostname, disk_id: diskIdLog, snapname: input.name },
    log: {
      msg: "Create snapshot of server's disk",
      detail: logDetail([
        ['snapname', input.name],
        ['disk_id', diskIdLog],
        ['type', type],
        ['fsfreeze', fsfreeze],
      ]),
      object: logObject(vm),
    },
    // The rows and the payload are made from the same values whether this task is submitted alone
    // (`prepare`) or with many others (`bulk`: the scheduler's tick inserts all runs' rows at once).
    prepare: async (trx) => {
      const rows: Array<{ id: number; type: number }> = [];
      for (const row of newRows) rows.push(await trx.insertInto('snapshot').values(row).returning(['id', 'type']).executeTakeFirstOrThrow());
      return finish(rows);
    },
    bulk: { snapshots: newRows, finish },
  };
}

/** The rest of planCreateSnapshot's spec: the pending rows, and the payload once they have ids. */
function createRows(
  vm: DiskTarget['vm'],
  targets: readonly DiskTarget[],
  input: CreateInput,
  v: { type: number; note: string; fsfreeze: boolean; now: string },
): { newRows: NewSnapshot[]; finish: (rows: ReadonlyArray<{ id: number; type: number }>) => { payload: AgentPayload; context: CreateContext } } {
  const newRows: NewSnapshot[] = targets.map((x) => ({
    vm_uuid: vm.uuid,
    define_id: input.defineId ?? null,
    name: input.name,
    type: v.type,
    status: SNAP_PENDING,
    storage_id: x.storage.id,
    size: null,
    note: v.note,
    fsfreeze: v.fsfreeze ? 1 : 0,
    pinned: 0,
    disk_real_id: x.disk.real_id,
    status_change: v.now,
    created: v.now,
    changed: v.now,
  }));
  const finish = (rows: ReadonlyArray<{ id: number; type: number }>) => {
    const items: CreateItem[] = targets.map((x, i) => ({ storage: x.storage.name, disk: diskRef(vm, x.disk), id: zfsName(rows[i]!), name: input.name }));
    // Danube passes the guest-agent socket only when the VM is not stopped (a stopped VM is
    // consistent anyway, and still flagged).
    // A libvirt domain is frozen through libvirt (its socket fields stay unset).
    const running = v.fsfreeze && vm.status !== VM_STOPPED;
    const freeze = !running ? undefined : vm.libvirt === 1 ? { domain: vm.uuid } : vm.qga_socket ? { socket: vm.qga_socket } : undefined;
    const payload: AgentPayload = { op: 'create', items, ...(freeze ? { freeze } : {}) };
    return {
      payload,
      context: {
        snapshotIds: rows.map((r) => r.id),
        diskArrayIds: targets.map((x) => x.diskArrayId),
        defineId: input.defineId ?? null,
        fsfreeze: v.fsfreeze,
        freezeAsked: freeze !== undefined,
        name: input.name,
        vmUuid: vm.uuid,
      },
    };
  };
  return { newRows, finish };
}

/** VM and DC size quotas (spec 9), on sizes read from storage; lost rows never count. */
async function checkSizeQuotas(ctx: AppContext, caller: Caller, t: DiskTarget): Promise<void> {
  let vmLimitMb = t.vm.snapshot_size_limit;
  if (vmLimitMb === null && t.vm.snapshot_size_percent_limit !== null) {
    const diskTotalMb = t.disks.reduce((sum, d) => sum + d.size_mb, 0);
    vmLimitMb = Math.floor((diskTotalMb * t.vm.snapshot_size_percent_limit) / 100);
  }
  if (vmLimitMb !== null) {
    const totalMb = Math.floor((await sumSizes(ctx.db, { vmUuid: t.vm.uuid })) / MB);
    if (totalMb >= vmLimitMb) throw apiError('snapshotSizeLimit');
  }
  const dcLimit = dcSettings(caller.dc).VMS_VM_SNAPSHOT_DC_SIZE_LIMIT;
  if (dcLimit !== null) {
    const totalMb = Math.floor((await sumSizes(ctx.db, { dcId: t.vm.dc_id })) / MB);
    if (totalMb >= dcLimit) throw apiError('dcSizeLimit');
  }
}

function dummyId(caller: Caller, ownerId: number): string {
  return makeDummyTaskId({ userId: caller.user.id, ownerId, dcBound: true, dcId: caller.dc.id }, randomUUID());
}

export type DeleteResult = { kind: 'task'; taskId: string } | { kind: 'sync'; result: unknown };

/** DELETE /vm/<vm>/snapshot/<name> after the lookups (spec 4.5 DELETE). */
export async function deleteSnapshot(ctx: AppContext, caller: Caller, t: DiskTarget, snap: SnapshotView): Promise<DeleteResult> {
  if (snap.status !== SNAP_OK && snap.status !== SNAP_LOST) throw apiError('snapshotStatusNotOk');
  if (snap.pinned) throw apiError('snapshotPinned');
  const msg = "Delete snapshot of server's disk";
  const detail = logDetail([
    ['snapname', snap.name],
    ['disk_id', t.diskArrayId],
  ]);
  if (snap.status === SNAP_LOST) {
    const now = ctx.clock.now().toISOString();
    await ctx.db.transaction().execute(async (trx) => {
      await deleteSnapshots(trx, [snap.id]);
      await writeLog(trx, {
        time: now,
        taskId: dummyId(caller, t.vm.owner_id),
        taskType: 'e',
        status: 'SUCCESS',
        userId: caller.user.id,
        username: caller.user.username,
        ownerId: t.vm.owner_id,
        dcId: t.vm.dc_id,
        msg,
        detail,
        object: logObject(t.vm),
      });
    });
    return { kind: 'sync', result: { message: 'Snapshot successfully deleted from DB' } };
  }
  const taskId = await submitDestroy(ctx, caller, t, [snap], { bulk: false, msg, detail, type: 'e' });
  return { kind: 'task', taskId };
}

/** DELETE /vm/<vm>/snapshot (bulk) after the lookups (spec 4.4 DELETE steps 3–7). */
export async function bulkDelete(
  ctx: AppContext,
  caller: Caller,
  t: DiskTarget,
  snapnamesRaw: unknown,
  opts: { type?: 'e' | 'a' } = {},
): Promise<DeleteResult> {
  if (!Array.isArray(snapnamesRaw) || snapnamesRaw.length === 0) throw apiError('invalidSnapnames');
  const names = snapnamesRaw.map((n) => (typeof n === 'string' ? n : JSON.stringify(n)));
  const matches: SnapshotView[] = [];
  for (const name of new Set(names)) {
    const s = await findSnapshot(ctx.db, t.vm.uuid, t.disk.real_id, name);
    if (s) matches.push(s);
  }
  if (matches.length === 0) throw apiError('snapshotNotFound');
  requireOperational(t.vm);
  if (matches.some((s) => s.pinned)) throw apiError('snapshotPinned');
  const msg = "Delete snapshots of server's disk";
  const lost = matches.filter((s) => s.status === SNAP_LOST);
  let work = matches;
  if (lost.length > 0) {
    const now = ctx.clock.now().toISOString();
    await ctx.db.transaction().execute(async (trx) => {
      await deleteSnapshots(
        trx,
        lost.map((s) => s.id),
      );
      await writeLog(trx, {
        time: now,
        taskId: dummyId(caller, t.vm.owner_id),
        taskType: opts.type ?? 'e',
        status: 'SUCCESS',
        userId: caller.user.id,
        username: caller.user.username,
        ownerId: t.vm.owner_id,
        dcId: t.vm.dc_id,
        msg,
        detail: logDetail([
          ['snapnames', lost.map((s) => s.name).join(',')],
          ['disk_id', t.diskArrayId],
        ]),
        object: logObject(t.vm),
      });
    });
    // With lost matches, pending/rollback ones are dropped silently (spec 4.4 step 5).
    work = matches.filter((s) => s.status === SNAP_OK);
    if (work.length === 0) return { kind: 'sync', result: { message: 'Snapshots successfully deleted from DB' } };
  } else if (matches.some((s) => s.status !== SNAP_OK)) {
    throw apiError('snapshotStatusNotOk');
  }
  const detail = logDetail([
    ['snapnames', work.map((s) => s.name).join(',')],
    ['disk_id', t.diskArrayId],
  ]);
  const taskId = await submitDestroy(ctx, caller, t, work, { bulk: true, msg, detail, type: opts.type ?? 'e' });
  return { kind: 'task', taskId };
}

async function submitDestroy(
  ctx: AppContext,
  caller: Caller,
  t: DiskTarget,
  snaps: readonly SnapshotView[],
  o: { bulk: boolean; msg: string; detail: string; type: 'e' | 'a' },
): Promise<string> {
  const now = ctx.clock.now().toISOString();
  const ids = snaps.map((s) => s.id);
  return ctx.tasks.submit<DeleteContext>({
    kind: 'snapshot_delete',
    type: o.type,
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: t.vm.owner_id,
    dcId: t.vm.dc_id,
    dcBound: true,
    vmUuid: t.vm.uuid,
    node: { id: t.node.id, hostname: t.node.hostname },
    locks: [diskLockKey(t.vm.uuid, t.disk.real_id)],
    apiview: o.bulk
      ? { view: 'vm_snapshot_list', method: 'DELETE', hostname: t.vm.hostname, disk_id: t.diskArrayId, snapnames: snaps.map((s) => s.name) }
      : { view: 'vm_snapshot', method: 'DELETE', hostname: t.vm.hostname, disk_id: t.diskArrayId, snapname: snaps[0]!.name },
    log: { msg: o.msg, detail: o.detail, object: logObject(t.vm) },
    prepare: async (trx) => {
      // Re-check inside the transaction: a concurrent request may have changed a row since the read.
      const fresh = await trx.selectFrom('snapshot').select(['id', 'status']).where('id', 'in', ids).execute();
      if (fresh.length !== ids.length || fresh.some((r) => r.status !== SNAP_OK)) throw apiError('snapshotStatusNotOk');
      await setStatus(trx, ids, SNAP_PENDING, now);
      const payload: AgentPayload = { op: 'destroy', storage: t.storage.name, disk: diskRef(t.vm, t.disk), ids: snaps.map(zfsName) };
      return {
        payload,
        context: {
          snapshotIds: ids,
          bulk: o.bulk,
          detail: o.detail,
          vmUuid: t.vm.uuid,
          diskArrayId: t.diskArrayId,
          auto: snaps.every((s) => s.type === TYPE_AUTO),
        },
      };
    },
  });
}

/** PUT with `note` and/or `pinned`: synchronous, no VM or status checks, no task log (spec 4.5). */
/** Returns false when the row is gone (a DELETE completed since the caller read it). */
export async function updateSnapshotFields(ctx: AppContext, snap: SnapshotView, data: Readonly<Record<string, unknown>>): Promise<boolean> {
  const fields = validateFields(data as Record<string, unknown>, { note: NOTE_RULE, pinned: { kind: 'bool' } }, { partial: true });
  if (!fields.ok) throw new FailureError(fields.errors);
  const now = ctx.clock.now().toISOString();
  const set: { note?: string; pinned?: number; changed: string } = { changed: now };
  if (fields.value.note !== undefined) set.note = fields.value.note as string;
  if (fields.value.pinned !== undefined) set.pinned = fields.value.pinned ? 1 : 0;
  const res = await ctx.db.updateTable('snapshot').set(set).where('id', '=', snap.id).executeTakeFirst();
  return Number(res.numUpdatedRows) > 0;
}
