/**
 * One automatic snapshot run of a definition (Danube's `vm_snapshot_beat`, spec 8.1): the lookups
 * and checks of an internal `POST /vm/<vm>/snapshot/<define>-<UTC time>` as the system user, then
 * the create task; and, for a scheduled run that could not start, the FAILURE task-log entry, the
 * definition's `last_error` and the alert (a warning only for 423); a storage below the free-space
 * floor makes it a skipped slot instead (capacity.skip.ts).
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { AppContext } from '../app-context.js';
import { SYSTEM_USER_ID, SYSTEM_USERNAME } from '../domain/system.js';
import type { Database, DcRow, DefineRow, NodeRow, NodeStorageRow, UserRow, VmDiskRow, VmRow } from '../db/schema.js';
import type { Caller } from '../accounts/caller.js';
import { ApiError, FailureError, apiError } from '../domain/errors.js';
import { makeTaskId } from '../domain/taskid.js';
import { writeLog } from '../tasks/task-log.js';
import { inChunk, inValues } from '../db/bulk.js';
import { planCreateSnapshot, type CreateContext } from '../snapshots/snapshot.service.js';
import type { TaskSpec } from '../tasks/task.types.js';
import { logObject, type DiskTarget } from '../snapshots/snapshot.context.js';
import { requireNodeOnline, requireOperational, requireSnapshotsEnabled } from '../vms/vm.lookup.js';
import { alerts } from '../alerts/alert.messages.js';
import { StorageFullError } from '../snapshots/capacity.js';
// A function-level import cycle (capacity.skip → retention → run): nothing runs at load time.
import { skipForCapacity } from './capacity.skip.js';
import type { AutomationServices, DefineLabels } from './services.js';

export const CREATE_LOG_MSG = "Create snapshot of server's disk";

/**
 * The rows runs need, loaded in a few queries for a whole batch of definitions (a tick may start
 * thousands of runs; one query per run and table would dominate its time).
 */
export class RunTargets {
  readonly #vms = new Map<string, VmRow>();
  readonly #disks = new Map<string, VmDiskRow[]>();
  readonly #storages = new Map<number, NodeStorageRow>();
  readonly #nodes = new Map<number, NodeRow>();
  readonly #dcs = new Map<number, DcRow>();
  #system: UserRow | null = null;

  constructor(private readonly db: Kysely<Database>) {}

  async load(defs: readonly Pick<DefineRow, 'vm_uuid'>[]): Promise<void> {
    const uuids = [...new Set(defs.map((d) => d.vm_uuid))].filter((u) => !this.#vms.has(u));
    const size = inChunk(this.db);
    for (let i = 0; i < uuids.length; i += size) {
      const chunk = uuids.slice(i, i + size);
      for (const vm of await this.db.selectFrom('vm').selectAll().where(inValues(this.db, 'uuid', chunk, 'text')).execute()) this.#vms.set(vm.uuid, vm);
      const disks = await this.db.selectFrom('vm_disk').selectAll().where(inValues(this.db, 'vm_uuid', chunk, 'text')).orderBy('vm_uuid').orderBy('real_id').execute();
      for (const u of chunk) this.#disks.set(u, []);
      for (const d of disks) this.#disks.get(d.vm_uuid)!.push(d);
    }
    if (this.#storages.size === 0) {
      // Nodes, storages and DCs are few; the system user is one row.
      for (const s of await this.db.selectFrom('node_storage').selectAll().execute()) this.#storages.set(s.id, s);
      for (const n of await this.db.selectFrom('node').selectAll().execute()) this.#nodes.set(n.id, n);
      for (const dc of await this.db.selectFrom('dc').selectAll().execute()) this.#dcs.set(dc.id, dc);
      this.#system = (await this.db.selectFrom('account').selectAll().where('id', '=', SYSTEM_USER_ID).executeTakeFirst()) ?? null;
    }
  }

  vm(def: Pick<DefineRow, 'vm_uuid'>): VmRow | undefined {
    return this.#vms.get(def.vm_uuid);
  }

  diskArrayId(def: Pick<DefineRow, 'vm_uuid' | 'disk_real_id'>): number {
    return (this.#disks.get(def.vm_uuid) ?? []).findIndex((d) => d.real_id === def.disk_real_id) + 1;
  }

  labels(def: Pick<DefineRow, 'vm_uuid' | 'disk_real_id' | 'name'>): DefineLabels {
    return { vm: this.vm(def)?.hostname ?? def.vm_uuid, disk: this.diskArrayId(def), define: def.name };
  }

  /**
   * The lookups of Danube's internal POST, in its order: snapshot module of the VM's DC (404),
   * VM (404), its node online (423), the definition's disk (412). Throws the API error.
   */
  target(def: Pick<DefineRow, 'vm_uuid' | 'disk_real_id'>): { caller: Caller; target: DiskTarget } {
    const vm = this.#vms.get(def.vm_uuid);
    const dc = vm ? this.#dcs.get(vm.dc_id) : undefined;
    if (!vm || !dc || !this.#system) throw apiError('vmNotFound');
    const caller: Caller = { user: this.#system, dc, isAdmin: true, isSuperAdmin: true };
    requireSnapshotsEnabled(caller);
    const vmNode = this.#nodes.get(vm.node_id);
    if (!vmNode) throw apiError('nodeNotOperational');
    requireNodeOnline(vmNode);
    const disks = this.#disks.get(vm.uuid) ?? [];
    const idx = disks.findIndex((d) => d.real_id === def.disk_real_id);
    if (idx < 0) throw apiError('invalidDiskId');
    const disk = disks[idx]!;
    const storage = this.#storages.get(disk.storage_id);
    const node = storage ? this.#nodes.get(storage.node_id) : undefined;
    if (!storage || !node) throw apiError('storageMissingOnNode');
    return { caller, target: { vm, disks, disk, diskArrayId: idx + 1, storage, node } };
  }
}

/**
 * The rest of the POST (spec 4.5 after the lookups): the name must be free (406), the VM
 * operational (423), then the create task, automatic because the definition is attached.
 * Shared by scheduled runs and "run now"; throws ApiError/FailureError like the API.
 */
export async function startRun(...args: Parameters<typeof planRun>): Promise<string> {
  const [ctx] = args;
  return ctx.tasks.submit(await planRun(...args));
}

/** startRun's checks and the create task it would submit (a tick submits many in one transaction). */
export async function planRun(
  ctx: AppContext,
  caller: Caller,
  t: DiskTarget,
  def: Pick<DefineRow, 'id' | 'fsfreeze'>,
  name: string,
  /**
   * Whether the name is taken, when the caller knows (the tick passes false: its bulk insert
   * refuses a taken name with the same 406, see Scheduler #planRuns); else it is looked up here.
   */
  knownTaken?: boolean,
): Promise<TaskSpec<CreateContext>> {
  const taken =
    knownTaken ??
    (await ctx.db
      .selectFrom('snapshot')
      .select('id')
      .where('vm_uuid', '=', t.vm.uuid)
      .where('disk_real_id', '=', t.disk.real_id)
      .where('name', '=', name)
      .executeTakeFirst()) !== undefined;
  if (taken) throw apiError('snapshotExists');
  requireOperational(t.vm);
  return planCreateSnapshot(ctx, caller, [t], { name, fsfreeze: def.fsfreeze === 1, diskIdRaw: t.diskArrayId, defineId: def.id });
}

/** HTTP status and Danube's error text of a failed start ("detail or message"). */
export function describeStartError(err: unknown): { status: number; detail: string } {
  if (err instanceof ApiError) return { status: err.status, detail: err.detail };
  if (err instanceof FailureError) {
    const r = err.result;
    if (typeof r === 'string') return { status: err.status, detail: r };
    const parts = Object.entries(r).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`);
    return { status: err.status, detail: parts.join('; ') };
  }
  return { status: 500, detail: err instanceof Error ? err.message : String(err) };
}

export interface FailedStart {
  readonly def: Pick<DefineRow, 'id' | 'name'>;
  readonly vm: VmRow | undefined;
  readonly diskArrayId: number;
  readonly name: string;
  readonly labels: DefineLabels;
}

/**
 * A scheduled run did not start (spec 8.1): a FAILURE task-log entry under a new id derived from
 * the beat's (`7e7d<dc>-…`), the definition's `last_error`, and the alert, except for 423 (a VM or
 * node that is not operational) where only a warning is logged, as in Danube.
 */
export async function recordStartFailure(ctx: AppContext, services: AutomationServices, f: FailedStart, err: unknown): Promise<string> {
  // A storage below the free-space floor is a skip, not a failure: no entry, no last_error, and
  // retention runs (capacity.skip.ts). Decided here, where every scheduled start failure arrives.
  if (err instanceof StorageFullError) return skipForCapacity(ctx, services, f, err);
  const { status, detail } = describeStartError(err);
  if (status >= 500) ctx.log.error({ err, define: f.def.name, vm: f.labels.vm }, 'automatic snapshot failed to start');
  const now = ctx.clock.now().toISOString();
  const vm = f.vm;
  await ctx.db.transaction().execute(async (trx) => {
    if (vm) {
      await writeLog(trx, {
        time: now,
        taskId: makeTaskId({ userId: SYSTEM_USER_ID, type: 'e', ownerId: SYSTEM_USER_ID, dcBound: true, dcId: vm.dc_id }, randomUUID()),
        taskType: 'e',
        status: 'FAILURE',
        userId: SYSTEM_USER_ID,
        username: SYSTEM_USERNAME,
        ownerId: vm.owner_id,
        dcId: vm.dc_id,
        msg: CREATE_LOG_MSG,
        detail: `snapname=${f.name}, disk_id=${f.diskArrayId}, type=1. Error: ${detail}`,
        object: logObject(vm),
      });
    }
    await trx.updateTable('snapshot_define').set({ last_error: detail }).where('id', '=', f.def.id).execute();
  });
  services.observer.runFailed(f.labels);
  if (status === 423) {
    ctx.log.warn({ define: f.def.name, vm: f.labels.vm, disk_id: f.diskArrayId, detail }, 'automatic snapshot not started');
  } else {
    services.alerts.send(alerts.startFailed(f.labels.vm, f.diskArrayId, f.def.name));
  }
  return detail;
}
