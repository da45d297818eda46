/**
 * The disks of a VM (`/vm/<vm>/define/disk/<disk_id>`). `disk_id` in URLs and objects is the
 * 1-based position in the VM's disk list; rows keep the *real* id, which never changes, so a
 * disk's default path (`<vm uuid>-disk<real id>`) and its snapshot rows stay put when an earlier
 * disk is removed. A new disk's real id is the highest one + 1 (0 for the first).
 *
 * Creating and deleting images are node tasks (the agent's `disk_create` / `disk_delete`). The
 * row of a new disk is written only by the task's completion on success, so a failed create
 * leaves nothing behind; the POST waits for that completion and answers with the result.
 */
import type { AppContext } from '../app-context.js';
import type { VmDiskRow, VmRow } from '../db/schema.js';
import type { Caller } from '../accounts/caller.js';
import type { StorageDisk } from '../agent/payloads.js';
import { ApiError, FailureError, apiError } from '../domain/errors.js';
import { msg } from '../domain/messages.js';
import { parseIntField, validateFields, type FieldErrors, type Rule } from '../domain/validate.js';
import { assertDiskPath } from '../storage/driver.js';
import { findStorage } from '../nodes/node.repository.js';
import { logDetail } from '../tasks/task-log.js';
import type { TaskStatus } from '../tasks/task.types.js';
import { VM_STOPPED, arrayDiskId, requireNodeOnline, resolveDisk, vmDisks, vmNode } from './vm.lookup.js';
import * as repo from './vm.repository.js';
import { MB, diskObject, vmLogObject, type DiskObject } from './vm.output.js';
import type { DiskCreateContext, DiskDeleteContext } from './vm.kinds.js';
import { vmTask } from '../tasks/vm-task.js';

/** The snapshot lock of a disk (spec 7.4): disk tasks take it so no snapshot operation races them. */
export function diskLock(vmUuid: string, realId: number): string {
  return `vm_snapshot vm:${vmUuid} disk:${realId}`;
}

/**
 * Held by a disk create and by a VM delete: the two must not interleave (a disk row appearing for
 * a VM that is being deleted).
 */
export function VM_DEFINE_LOCK(vmUuid: string): string {
  return `vm_define vm:${vmUuid}`;
}

/** Two creates of the same path on one storage (different VMs) must not both adopt the image. */
function pathLock(storageId: number, path: string): string {
  return `vm_disk storage:${storageId} path:${path}`;
}

/** The default storage of a new disk, when the VM's node has one of that name. */
export const DEFAULT_STORAGE = 'default';
/** 2^31 − 1 MB (2 PiB): a whole number of bytes that stays exact in a double. */
const MAX_DISK_MB = 2147483647;
const STORAGE_NAME_MAX = 64;

const NO_STORAGE = "Storage does not exist on the VM's node";
const NO_RESIZE = 'Disk resize is not supported';
const NO_MOVE = 'Disk zpool and path cannot be changed';

const LOG_CREATE = 'Create server disk definition';
const LOG_DELETE = 'Delete server disk definition';

/** A submitted disk create: its task and the real id its row gets on success. */
export interface CreateDiskTask {
  readonly taskId: string;
  readonly realId: number;
}

/** GET /vm/<vm>/define/disk: every disk object in array order. */
export async function listDisks(ctx: AppContext, vm: VmRow, superAdmin = false): Promise<DiskObject[]> {
  const disks = await vmDisks(ctx.db, vm.uuid);
  const storages = await repo.storagesByIds(ctx.db, disks.map((d) => d.storage_id));
  return disks.map((d, i) => diskObject(d, i + 1, storages.get(d.storage_id), superAdmin));
}

async function oneDisk(ctx: AppContext, disks: readonly VmDiskRow[], disk: VmDiskRow, superAdmin = false): Promise<DiskObject> {
  const storages = await repo.storagesByIds(ctx.db, [disk.storage_id]);
  return diskObject(disk, arrayDiskId(disks, disk.real_id), storages.get(disk.storage_id), superAdmin);
}

/** GET /vm/<vm>/define/disk/<disk_id>. */
export async function getDisk(ctx: AppContext, vm: VmRow, rawId: string | undefined, superAdmin = false): Promise<DiskObject> {
  const disks = await vmDisks(ctx.db, vm.uuid);
  return oneDisk(ctx, disks, resolveDisk(disks, rawId ?? ''), superAdmin);
}

/** What the agent needs to delete these disks: storage name and path of each. */
export async function diskDeleteItems(ctx: AppContext, disks: readonly VmDiskRow[]): Promise<StorageDisk[]> {
  const storages = await repo.storagesByIds(ctx.db, disks.map((d) => d.storage_id));
  return disks.map((d) => {
    const storage = storages.get(d.storage_id);
    if (!storage) throw new Error(`storage ${d.storage_id} of disk ${d.path} is missing`);
    return { storage: storage.name, disk: { path: d.path } };
  });
}

function fieldOf(input: Record<string, unknown>, errors: FieldErrors, key: string, rule: Rule, partial: boolean): string | number | undefined {
  const r = validateFields(input, { [key]: rule }, { partial });
  if (!r.ok) {
    Object.assign(errors, r.errors);
    return undefined;
  }
  return r.value[key] as string | number | undefined;
}

/**
 * POST /vm/<vm>/define/disk/<disk_id>: only the next disk_id (count + 1), else 412. An unknown
 * `zpool` is a field error (`Storage does not exist on the VM's node`), like every other input
 * problem of this call; path traversal is `Invalid value.` and nothing is written. The route waits
 * for the task (the HTTP layer's wait) and answers with createdDisk.
 */
export async function createDisk(
  ctx: AppContext,
  caller: Caller,
  vm: VmRow,
  rawId: string | undefined,
  data: Readonly<Record<string, unknown>>,
): Promise<CreateDiskTask> {
  const disks = await vmDisks(ctx.db, vm.uuid);
  if (parseIntField(rawId) !== disks.length + 1) throw apiError('invalidDiskId');
  const realId = disks.length === 0 ? 0 : Math.max(...disks.map((d) => d.real_id)) + 1;
  const node = await vmNode(ctx.db, vm);
  const input: Record<string, unknown> = { ...data };
  if (input['zpool'] === undefined && (await findStorage(ctx.db, node.id, DEFAULT_STORAGE))) {
    input['zpool'] = DEFAULT_STORAGE;
  }
  const errors: FieldErrors = {};
  const zpool = fieldOf(input, errors, 'zpool', { kind: 'string', required: true, max: STORAGE_NAME_MAX }, false);
  const storage = typeof zpool === 'string' ? await findStorage(ctx.db, node.id, zpool) : undefined;
  if (typeof zpool === 'string' && !storage) errors['zpool'] = [NO_STORAGE];
  let path = fieldOf(input, errors, 'path', { kind: 'string', max: 255, nullAsEmpty: true }, false);
  if (path === undefined || path === '') path = errors['path'] ? undefined : `${vm.uuid}-disk${realId}`;
  if (typeof path === 'string') {
    try {
      assertDiskPath(path);
    } catch {
      errors['path'] = [msg.invalid];
    }
  }
  const size = fieldOf(input, errors, 'size', { kind: 'int', required: true, min: 1, max: MAX_DISK_MB }, false);
  if (Object.keys(errors).length > 0 || !storage || typeof path !== 'string' || typeof size !== 'number') {
    throw new FailureError(errors);
  }
  requireNodeOnline(node);

  const diskPath = path;
  const arrayId = disks.length + 1;
  const context: DiskCreateContext = { vmUuid: vm.uuid, realId, storageId: storage.id, path: diskPath, sizeMb: size };
  const taskId = await ctx.tasks.submit<DiskCreateContext>({
    kind: 'disk_create',
    ...vmTask(caller, vm, node),
    locks: [diskLock(vm.uuid, realId), VM_DEFINE_LOCK(vm.uuid), pathLock(storage.id, diskPath)],
    apiview: { view: 'vm_define_disk', method: 'POST', hostname: vm.hostname, disk_id: arrayId },
    log: {
      msg: LOG_CREATE,
      detail: logDetail([
        ['disk_id', arrayId],
        ['zpool', storage.name],
        ['path', diskPath],
        ['size', size],
      ]),
      object: vmLogObject(vm),
    },
    // Checked under the path lock, so no other create can take the path between check and insert.
    prepare: async (trx) => {
      if (await repo.diskAtPath(trx, storage.id, diskPath)) throw apiError('diskExists');
      return { payload: { op: 'disk_create', storage: storage.name, disk: { path: diskPath, sizeBytes: size * MB } }, context };
    },
  });

  return { taskId, realId };
}

/** The disk a create task made, once it ended: its object, or 400 FAILURE with the task's message. */
export async function createdDisk(ctx: AppContext, vm: VmRow, created: CreateDiskTask, status: TaskStatus): Promise<DiskObject> {
  const { realId } = created;
  if (!status.found) throw new FailureError(status.body.detail);
  if (status.body.status !== 'SUCCESS') {
    const result = status.body.result as { message?: string } | string | null;
    throw new FailureError(typeof result === 'string' ? result : (result?.message ?? status.body.status));
  }
  const after = await vmDisks(ctx.db, vm.uuid);
  const row = after.find((d) => d.real_id === realId);
  if (!row) throw new Error(`disk ${realId} of ${vm.uuid} has no row after its create succeeded`);
  return oneDisk(ctx, after, row);
}

/**
 * PUT /vm/<vm>/define/disk/<disk_id>. Images are neither resized nor moved: a `size` change is
 * 417 `VM has snapshots` when the disk has snapshots (spec 14, Danube's answer) and otherwise 417
 * `Disk resize is not supported`; a different `zpool` or `path` is 417 too. Unchanged values
 * answer 200 with the disk.
 */
export async function updateDisk(
  ctx: AppContext,
  vm: VmRow,
  rawId: string | undefined,
  data: Readonly<Record<string, unknown>>,
): Promise<DiskObject> {
  const disks = await vmDisks(ctx.db, vm.uuid);
  const disk = resolveDisk(disks, rawId ?? '');
  const input = { ...data };
  const errors: FieldErrors = {};
  const zpool = fieldOf(input, errors, 'zpool', { kind: 'string', required: true, max: STORAGE_NAME_MAX }, true);
  const path = fieldOf(input, errors, 'path', { kind: 'string', required: true, max: 255 }, true);
  const size = fieldOf(input, errors, 'size', { kind: 'int', required: true, min: 1, max: MAX_DISK_MB }, true);
  if (Object.keys(errors).length > 0) throw new FailureError(errors);
  const current = await oneDisk(ctx, disks, disk);
  if ((zpool !== undefined && zpool !== current.zpool) || (path !== undefined && path !== disk.path)) {
    throw new ApiError(417, NO_MOVE);
  }
  if (size !== undefined && size !== disk.size_mb) {
    if (await repo.diskHasSnapshots(ctx.db, vm.uuid, disk.real_id)) throw apiError('vmHasSnapshots');
    throw new ApiError(417, NO_RESIZE);
  }
  return current;
}

/**
 * DELETE /vm/<vm>/define/disk/<disk_id>: a node task destroys the image and its snapshots; its
 * completion deletes the disk row with its snapshot rows and definitions. Later disks keep their
 * real ids (and paths); their array ids shift down by one.
 */
export async function deleteDisk(ctx: AppContext, caller: Caller, vm: VmRow, rawId: string | undefined): Promise<string> {
  const disks = await vmDisks(ctx.db, vm.uuid);
  const disk = resolveDisk(disks, rawId ?? '');
  if (vm.status !== VM_STOPPED) throw apiError('vmNotStopped');
  const node = await vmNode(ctx.db, vm);
  requireNodeOnline(node);
  const items = await diskDeleteItems(ctx, [disk]);
  const arrayId = arrayDiskId(disks, disk.real_id);
  const context: DiskDeleteContext = { vmUuid: vm.uuid, realId: disk.real_id };
  return ctx.tasks.submit<DiskDeleteContext>({
    kind: 'disk_delete',
    ...vmTask(caller, vm, node),
    locks: [diskLock(vm.uuid, disk.real_id)],
    apiview: { view: 'vm_define_disk', method: 'DELETE', hostname: vm.hostname, disk_id: arrayId },
    log: { msg: LOG_DELETE, detail: logDetail([['disk_id', arrayId]]), object: vmLogObject(vm) },
    prepare: async () => ({ payload: { op: 'disk_delete', items }, context }),
  });
}
