/**
 * The rules of the VM registry: define input (spec 9's limit fields with the DC's bounds and
 * defaults), create, update, delete (spec 14: disks destroyed on storage first, then every row of
 * the VM) and the recorded status of an externally managed VM.
 *
 * Callers (routes) have checked permissions and looked the VM up; everything here either changes
 * rows in one transaction with its task-log entry, or submits a task that does.
 */
import { randomUUID } from 'node:crypto';
import type { Insertable, Transaction, Updateable } from 'kysely';
import type { AppContext } from '../app-context.js';
import type { Database, NodeRow, UserRow, VmRow, VmTable } from '../db/schema.js';
import type { Caller } from '../accounts/caller.js';
import { ApiError, FailureError, LOCK_FAILED, apiError } from '../domain/errors.js';
import { msg } from '../domain/messages.js';
import { validateFields, type FieldErrors, type Rule } from '../domain/validate.js';
import { makeDummyTaskId } from '../domain/taskid.js';
import { dcSettings, type DcSnapshotSettings } from '../accounts/dc.settings.js';
import { writeLog, logDetail } from '../tasks/task-log.js';
import { OPERATIONAL_VM_STATUSES, VM_RUNNING, VM_STOPPED, requireNodeOnline, vmDisks, vmNode } from './vm.lookup.js';
import * as repo from './vm.repository.js';
import { isUniqueViolation } from '../db/capabilities.js';
import { statusObject, vmLogObject, vmObject, type VmObject, type VmStatusObject } from './vm.output.js';
import { diskDeleteItems, diskLock, VM_DEFINE_LOCK } from './disk.service.js';
import type { VmDeleteContext } from './vm.kinds.js';
import { vmTask } from '../tasks/vm-task.js';
import { HOSTNAME_MAX, HOSTNAME_RE } from '../domain/vm.js';

export { HOSTNAME_MAX, HOSTNAME_RE } from '../domain/vm.js';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const USERNAME_MAX = 150;
/**
 * A unix socket path must fit `sun_path` (108 bytes on Linux) with its terminating NUL, so 107
 * bytes is the longest path a client can connect to (libuv refuses longer ones).
 */
export const SOCKET_PATH_MAX_BYTES = 107;
const BRANDS: readonly string[] = ['kvm', 'bhyve', 'hvm'];
const STATUS_INPUT: Readonly<Record<string, number>> = { stopped: VM_STOPPED, running: VM_RUNNING };

/** Refused while a VM's node would change under its disks. Not a Danube message (Danube has no such call). */
const NODE_CHANGE_WITH_DISKS = 'Node cannot be changed while the VM has disks';

// Danube's task-log wording ("server" for VM); the first word gives the log flag.
const LOG_CREATE = 'Create server definition';
const LOG_UPDATE = 'Update server definition';
const LOG_DELETE = 'Delete server definition';
const LOG_START = 'Start server';
const LOG_STOP = 'Stop server';

type LimitField = 'snapshot_limit_manual' | 'snapshot_limit_auto' | 'snapshot_size_limit' | 'snapshot_size_percent_limit';
type SettingKey = keyof DcSnapshotSettings;

/**
 * Spec 9: with the DC setting null a limit is optional within 0–max (null clears it); with it set
 * to N the field is 1–N and required (`snapshot_limit_auto` is bounded by VMS_VM_SNAPSHOT_LIMIT_AUTO
 * but stays optional: spec 9 gives it no API field, esnap adds one without making it mandatory).
 * The `_DEFAULT` settings fill the field of a new VM.
 */
const LIMITS: ReadonlyArray<{ field: LimitField; bound: SettingKey; dflt: SettingKey | null; max: number; required: boolean }> = [
  { field: 'snapshot_limit_manual', bound: 'VMS_VM_SNAPSHOT_LIMIT_MANUAL', dflt: 'VMS_VM_SNAPSHOT_LIMIT_MANUAL_DEFAULT', max: 65536, required: true },
  { field: 'snapshot_limit_auto', bound: 'VMS_VM_SNAPSHOT_LIMIT_AUTO', dflt: null, max: 65536, required: false },
  { field: 'snapshot_size_limit', bound: 'VMS_VM_SNAPSHOT_SIZE_LIMIT', dflt: 'VMS_VM_SNAPSHOT_SIZE_LIMIT_DEFAULT', max: 2147483647, required: true },
  {
    field: 'snapshot_size_percent_limit',
    bound: 'VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT',
    dflt: 'VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT_DEFAULT',
    max: 10000,
    required: true,
  },
];

/** Parsed define input: only the keys that were given (or defaulted, on create). */
export interface DefineInput {
  alias?: string;
  uuid?: string;
  node?: NodeRow;
  owner?: UserRow;
  status?: number;
  brand?: string;
  qmp_socket?: string | null;
  qga_socket?: string | null;
  limits: Partial<Record<LimitField, number | null>>;
  /** `name=value` pairs for the task log, in field order. */
  log: Array<[string, unknown]>;
}

function choiceMessage(value: string): string {
  return `Select a valid choice. ${value} is not one of the available choices.`;
}

function missingObject(field: string, value: string): string {
  return `Object with ${field}=${value} does not exist.`;
}

function has(data: Readonly<Record<string, unknown>>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(data, key) && data[key] !== undefined;
}

/** Socket paths: absolute, no control characters (NUL, newline…), at most 107 bytes; null or '' clears. */
function socketField(raw: unknown): { value: string | null } | { errors: string[] } {
  if (raw === null || raw === '') return { value: null };
  if (typeof raw !== 'string') return { errors: [msg.invalid] };
  const errors: string[] = [];
  const bytes = Buffer.byteLength(raw, 'utf8');
  if (bytes > SOCKET_PATH_MAX_BYTES) errors.push(msg.maxLength(SOCKET_PATH_MAX_BYTES, bytes));
  if (!raw.startsWith('/') || /[\u0000-\u001f\u007f]/.test(raw)) errors.push(msg.invalid);
  return errors.length > 0 ? { errors } : { value: raw };
}

/**
 * Validates define input for a new VM (`current` null: defaults applied, required fields
 * enforced) or an update (partial). Field errors come in the VM object's key order, after the
 * URL's `hostname` error if there is one.
 */
export async function parseDefine(
  ctx: AppContext,
  caller: Caller,
  data: Readonly<Record<string, unknown>>,
  current: VmRow | null,
  urlErrors: FieldErrors = {},
): Promise<DefineInput> {
  const partial = current !== null;
  const settings = dcSettings(caller.dc);
  const input: Record<string, unknown> = { ...data };
  if (!partial) {
    if (!has(input, 'node') && ctx.settings.localNode !== null) input['node'] = ctx.settings.localNode;
    if (!has(input, 'owner')) input['owner'] = caller.user.username;
    if (!has(input, 'status')) input['status'] = 'stopped';
    if (!has(input, 'brand')) input['brand'] = 'kvm';
    for (const l of LIMITS) {
      const d = l.dflt === null ? null : (settings[l.dflt] as number | null);
      if (!has(input, l.field) && d !== null) input[l.field] = d;
    }
  }
  const errors: FieldErrors = { ...urlErrors };
  const out: DefineInput = { limits: {}, log: [] };
  const field = (key: string, rule: Rule): string | number | undefined => {
    const r = validateFields(input, { [key]: rule }, { partial });
    if (!r.ok) {
      Object.assign(errors, r.errors);
      return undefined;
    }
    return r.value[key] as string | number | undefined;
  };

  if (!partial) {
    // The uuid is fixed at creation: on update it is read-only (ignored), as in Danube.
    const uuid = field('uuid', { kind: 'string', pattern: UUID_RE, nullAsEmpty: true });
    out.uuid = typeof uuid === 'string' && uuid !== '' ? uuid.toLowerCase() : randomUUID();
  }

  const alias = field('alias', { kind: 'string', max: HOSTNAME_MAX, pattern: HOSTNAME_RE, nullAsEmpty: true });
  if (typeof alias === 'string') out.alias = alias;

  const nodeName = field('node', { kind: 'string', required: true, max: HOSTNAME_MAX });
  if (typeof nodeName === 'string') {
    const node = await repo.nodeByHostname(ctx.db, nodeName);
    if (node) out.node = node;
    else errors['node'] = [missingObject('hostname', nodeName)];
  }

  const ownerName = field('owner', { kind: 'string', required: true, max: USERNAME_MAX });
  if (typeof ownerName === 'string') {
    const owner = await repo.userByName(ctx.db, ownerName);
    if (owner) out.owner = owner;
    else errors['owner'] = [missingObject('username', ownerName)];
  }

  const status = field('status', { kind: 'string', required: true });
  if (typeof status === 'string') {
    const s = Object.hasOwn(STATUS_INPUT, status) ? STATUS_INPUT[status] : undefined;
    if (s === undefined) errors['status'] = [choiceMessage(status)];
    else out.status = s;
  }

  const brand = field('brand', { kind: 'string', required: true });
  if (typeof brand === 'string') {
    if (BRANDS.includes(brand)) out.brand = brand;
    else errors['brand'] = [choiceMessage(brand)];
  }

  for (const key of ['qmp_socket', 'qga_socket'] as const) {
    if (!has(input, key)) continue;
    const r = socketField(input[key]);
    if ('errors' in r) {
      errors[key] = r.errors;
      continue;
    }
    // The node's agent connects to these sockets and talks QMP/guest-agent on them: only the super
    // admin may point it somewhere (second-wave decision). Sending the value it has is no change.
    if (!caller.isSuperAdmin && r.value !== (current?.[key] ?? null)) throw apiError('noPermission');
    out[key] = r.value;
  }

  for (const l of LIMITS) {
    const bound = settings[l.bound] as number | null;
    const required = l.required && bound !== null;
    const raw = input[l.field];
    if (!required && has(input, l.field) && (raw === null || raw === '')) {
      out.limits[l.field] = null; // clears the limit
      continue;
    }
    const v = field(l.field, { kind: 'int', required, min: bound === null ? 0 : 1, max: bound ?? l.max });
    if (typeof v === 'number') out.limits[l.field] = v;
  }

  if (Object.keys(errors).length > 0) throw new FailureError(errors);

  for (const [key, value] of [
    ['uuid', partial ? undefined : out.uuid],
    ['alias', out.alias],
    ['node', out.node?.hostname],
    ['owner', out.owner?.username],
    ['status', has(data, 'status') || !partial ? (input['status'] as string) : undefined],
    ['brand', out.brand],
    ['qmp_socket', out.qmp_socket],
    ['qga_socket', out.qga_socket],
    ...LIMITS.map((l) => [l.field, out.limits[l.field]] as const),
  ] as Array<[string, unknown]>) {
    if (value !== undefined) out.log.push([key, value]);
  }
  return out;
}

async function logSync(trx: Transaction<Database>, ctx: AppContext, caller: Caller, vm: VmRow, message: string, detail: string): Promise<void> {
  await writeLog(trx, {
    time: ctx.clock.now().toISOString(),
    taskId: makeDummyTaskId({ userId: caller.user.id, ownerId: vm.owner_id, dcBound: true, dcId: vm.dc_id }, randomUUID()),
    taskType: 'e',
    status: 'SUCCESS',
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: vm.owner_id,
    dcId: vm.dc_id,
    msg: message,
    detail,
    object: vmLogObject(vm),
  });
}

/** The VM object with its references read from the database. */
export async function vmView(ctx: AppContext, vm: VmRow): Promise<VmObject> {
  return vmObject(vm, await repo.vmRefs(ctx.db, [vm]));
}

/** POST /vm/<hostname>/define. The hostname and uuid are unique across all DCs (406). */
export async function createVm(ctx: AppContext, caller: Caller, hostname: string, data: Readonly<Record<string, unknown>>): Promise<VmObject> {
  if (await repo.vmTaken(ctx.db, hostname, null)) throw apiError('vmExists');
  const urlCheck = validateFields({ hostname }, { hostname: { kind: 'string', required: true, max: HOSTNAME_MAX, pattern: HOSTNAME_RE } });
  const input = await parseDefine(ctx, caller, data, null, urlCheck.ok ? {} : urlCheck.errors);
  const uuid = input.uuid!;
  if (await repo.vmTaken(ctx.db, null, uuid)) throw apiError('vmExists');
  const now = ctx.clock.now().toISOString();
  const row: Insertable<VmTable> = {
    uuid,
    hostname,
    alias: input.alias || hostname,
    dc_id: caller.dc.id,
    owner_id: input.owner!.id,
    node_id: input.node!.id,
    brand: input.brand!,
    status: input.status!,
    // The VM enters its recorded state now.
    status_change: now,
    qmp_socket: input.qmp_socket ?? null,
    qga_socket: input.qga_socket ?? null,
    snapshot_limit_manual: input.limits.snapshot_limit_manual ?? null,
    snapshot_limit_auto: input.limits.snapshot_limit_auto ?? null,
    snapshot_size_limit: input.limits.snapshot_size_limit ?? null,
    snapshot_size_percent_limit: input.limits.snapshot_size_percent_limit ?? null,
    created: now,
    changed: now,
  };
  let vm: VmRow;
  try {
    vm = await ctx.db.transaction().execute(async (trx) => {
      const inserted = await repo.insertVm(trx, row);
      await logSync(trx, ctx, caller, inserted, LOG_CREATE, logDetail([['hostname', hostname], ...input.log]));
      return inserted;
    });
  } catch (err) {
    // A concurrent POST of the same hostname or uuid got there first.
    if (isUniqueViolation(err)) throw apiError('vmExists');
    throw err;
  }
  return vmObject(vm, {
    owners: new Map([[input.owner!.id, input.owner!.username]]),
    nodes: new Map([[input.node!.id, input.node!.hostname]]),
    diskCounts: new Map(),
  });
}

/** PUT /vm/<vm>/define: a partial update; the uuid is read-only, the hostname is the URL's. */
export async function updateVm(ctx: AppContext, caller: Caller, vm: VmRow, data: Readonly<Record<string, unknown>>): Promise<VmObject> {
  // A libvirt domain's monitor and agent belong to libvirt (src/hypervisor/): nobody points esnap elsewhere.
  if (vm.libvirt === 1 && (Object.hasOwn(data, 'qmp_socket') || Object.hasOwn(data, 'qga_socket'))) throw apiError('noPermission');
  const input = await parseDefine(ctx, caller, data, vm);
  const now = ctx.clock.now().toISOString();
  const set: Updateable<VmTable> = { changed: now, ...input.limits };
  if (input.alias !== undefined) set.alias = input.alias || vm.hostname;
  if (input.owner) set.owner_id = input.owner.id;
  if (input.brand !== undefined) set.brand = input.brand;
  if (input.qmp_socket !== undefined) set.qmp_socket = input.qmp_socket;
  if (input.qga_socket !== undefined) set.qga_socket = input.qga_socket;
  if (input.node && input.node.id !== vm.node_id) {
    // Disks live on the node's storages: moving the VM would orphan them (and their snapshots).
    if ((await vmDisks(ctx.db, vm.uuid)).length > 0) throw new ApiError(417, NODE_CHANGE_WITH_DISKS);
    // A disk being created right now would land on the old node.
    if ((await repo.activeVmTasks(ctx.db, vm.uuid)).length > 0) throw apiError('vmPendingTasks');
    set.node_id = input.node.id;
  }
  const statusChange = input.status !== undefined && input.status !== vm.status;
  if (statusChange && !OPERATIONAL_VM_STATUSES.has(vm.status)) throw apiError('vmNotOperational');
  const updated = await ctx.db.transaction().execute(async (trx) => {
    // Conditional, so a rollback that marked the VM notready meanwhile is not overwritten.
    if (statusChange && !(await repo.changeVmStatus(trx, vm.uuid, [...OPERATIONAL_VM_STATUSES], input.status!, now))) {
      throw await statusRefusal(trx, vm.uuid);
    }
    const row = await repo.updateVm(trx, vm.uuid, set);
    if (!row) throw apiError('vmNotFound'); // deleted since the lookup
    await logSync(trx, ctx, caller, row, LOG_UPDATE, logDetail(input.log));
    return row;
  });
  return vmView(ctx, updated);
}

export type DeleteOutcome = { readonly kind: 'sync' } | { readonly kind: 'task'; readonly taskId: string };

/**
 * DELETE /vm/<vm>/define. Without disks the rows go at once. With disks, one node task destroys
 * every image with its snapshots, holding each disk's snapshot lock so no snapshot operation
 * races it; its completion deletes the rows (vm.kinds.ts).
 */
export async function deleteVm(ctx: AppContext, caller: Caller, vm: VmRow): Promise<DeleteOutcome> {
  const disks = await vmDisks(ctx.db, vm.uuid);
  if (disks.length === 0) {
    // A disk being created holds this lock; its row would appear after the VM is gone.
    if (await repo.lockHeld(ctx.db, VM_DEFINE_LOCK(vm.uuid))) throw new FailureError(LOCK_FAILED);
    await ctx.db.transaction().execute(async (trx) => {
      await repo.deleteVmRows(trx, vm.uuid);
      await logSync(trx, ctx, caller, vm, LOG_DELETE, logDetail([['hostname', vm.hostname]]));
    });
    return { kind: 'sync' };
  }
  // Destroying images under a running guest would pull its disks away.
  if (vm.status !== VM_STOPPED) throw apiError('vmNotStopped');
  const node = await vmNode(ctx.db, vm);
  requireNodeOnline(node);
  const items = await diskDeleteItems(ctx, disks);
  const context: VmDeleteContext = { vmUuid: vm.uuid };
  const taskId = await ctx.tasks.submit<VmDeleteContext>({
    kind: 'vm_delete',
    ...vmTask(caller, vm, node),
    locks: [...disks.map((d) => diskLock(vm.uuid, d.real_id)), VM_DEFINE_LOCK(vm.uuid)],
    apiview: { view: 'vm_define', method: 'DELETE', hostname: vm.hostname },
    log: { msg: LOG_DELETE, detail: logDetail([['hostname', vm.hostname]]), object: vmLogObject(vm) },
    prepare: async () => ({ payload: { op: 'disk_delete', items }, context }),
  });
  return { kind: 'task', taskId };
}

/** Why a conditional status change matched no row: the VM is gone (404) or in a transient state (423). */
async function statusRefusal(trx: Transaction<Database>, uuid: string): Promise<ApiError> {
  return (await repo.vmByUuid(trx, uuid)) ? apiError('vmNotOperational') : apiError('vmNotFound');
}

/** GET /vm/<vm>/status. */
export async function vmStatus(ctx: AppContext, vm: VmRow): Promise<VmStatusObject> {
  return statusObject(vm, await repo.activeVmTasks(ctx.db, vm.uuid));
}

/**
 * PUT /vm/<vm>/status/start|stop: records the state of a VM managed outside esnap. Idempotent: a
 * VM already in that state answers the same, with nothing written. A VM in a transient state
 * (notready during a rollback) is 423 `VM is not operational`, so a rollback's status is kept.
 */
export async function setVmStatus(ctx: AppContext, caller: Caller, vm: VmRow, target: 'running' | 'stopped'): Promise<VmStatusObject> {
  const status = STATUS_INPUT[target]!;
  if (vm.status === status) return vmStatus(ctx, vm);
  if (!OPERATIONAL_VM_STATUSES.has(vm.status)) throw apiError('vmNotOperational');
  const now = ctx.clock.now().toISOString();
  const updated = await ctx.db.transaction().execute(async (trx) => {
    if (!(await repo.changeVmStatus(trx, vm.uuid, [...OPERATIONAL_VM_STATUSES], status, now))) throw await statusRefusal(trx, vm.uuid);
    // The conditional update holds the row until the commit: a concurrent delete waits for it.
    const row = await repo.vmByUuid(trx, vm.uuid);
    if (!row) throw apiError('vmNotFound');
    await logSync(trx, ctx, caller, row, target === 'running' ? LOG_START : LOG_STOP, logDetail([['status', target]]));
    return row;
  });
  return vmStatus(ctx, updated);
}
