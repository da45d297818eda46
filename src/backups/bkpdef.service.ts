/**
 * Backup definitions (Danube's api/vm/backup/vm_define_backup.py and BackupDefineSerializer): the
 * same lookups and check order as snapshot definitions (module switch, VM, node for writes,
 * disk_id, definition, VM status), then Danube's fields and rules: `node` must be a backup node
 * (`Object with hostname=<x> does not exist.` also for a node that is not one), `zpool` a storage of
 * that node (`Zpool does not exist on node.`), `type` fixed after creation. esnap adds: type 1
 * (dataset, native send/receive) only where the disk's storage and the backup storage are of the
 * same driver that can send natively (zfs, btrfs).
 */
import { datasetBackupSupported } from '../transport/native-streams.js';
import { randomInt } from 'node:crypto';
import type { Insertable, Updateable } from 'kysely';
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import type { VmDiskRow, VmRow } from '../db/schema.js';
import { ApiError, FailureError } from '../domain/errors.js';
import { checkSchedule, cronDefaults, isValidTimeZone } from '../domain/cron.js';
import { NAME_RE, NOTE_FORBIDDEN, parseBool, parseIntField, validateFields, type FieldErrors, type Rule } from '../domain/validate.js';
import { writeLog } from '../tasks/task-log.js';
import { definitionLogEntry, nextRunOf } from '../definitions/define.common.js';
import { parseOrderBy as parseDanubeOrderBy } from '../domain/order-by.js';
import { diskStorage, findVm, requireNodeOnline, requireOperational, resolveDisk, vmDisks, vmNode } from '../vms/vm.lookup.js';
import { lockVmForDefines } from '../definitions/define.repository.js';
import { isUniqueViolation } from '../db/capabilities.js';
import { lastValue } from '../definitions/define.service.js';
import { backupSettings } from './backup.settings.js';
import type { BackupDefineTable } from './backup.schema.js';
import * as repo from './bkpdef.repository.js';
import { bkpDefObject, type BkpDefObject } from './bkpdef.output.js';

export const LOG_BKPDEF_CREATE = 'Create server backup definition';
export const LOG_BKPDEF_UPDATE = 'Update server backup definition';
export const LOG_BKPDEF_DELETE = 'Delete server backup definition';
export const BKPDEF_NOT_FOUND = 'Backup definition not found';
export const BKPDEF_EXISTS = 'Backup definition already exists';
export const BKPDEF_LIMIT_REACHED = 'Maximum number of backup definitions reached.';
export const ZPOOL_NOT_ON_NODE = 'Zpool does not exist on node.';
export const TYPE_DATASET_UNSUPPORTED = "Backup type dataset is not supported by the disk's storage.";
export const INVALID_TZ = 'Invalid time zone.';
export const nodeDoesNotExist = (hostname: string): string => `Object with hostname=${hostname} does not exist.`;
const invalidChoice = (v: number): string => `Select a valid choice. ${v} is not one of the available choices.`;

export const TYPE_DATASET = 1;
export const TYPE_FILE = 2;
const TYPES: ReadonlySet<number> = new Set([TYPE_DATASET, TYPE_FILE]);
const COMPRESSIONS: ReadonlySet<number> = new Set([0, 1, 2, 3]); // none, gzip, bzip2, xz
const HVM_BRANDS: ReadonlySet<string> = new Set(['kvm', 'bhyve', 'hvm']);
const RETENTION_MIN = 0;
const RETENTION_MAX = 65536;

const isHvm = (vm: VmRow): boolean => HVM_BRANDS.has(vm.brand);
const own = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function requireBackupsEnabled(caller: Caller): void {
  if (!backupSettings(caller.dc).VMS_VM_BACKUP_ENABLED) throw new ApiError(404, 'Not found');
}

// ---------------------------------------------------------------------------------------------
// Lists

const ORDER_FIELDS: Readonly<Record<string, repo.BkpSortColumn>> = {
  name: 'd.name',
  disk_id: 'd.disk_real_id',
  hostname: 'vm.hostname',
  created: 'd.id',
};

/** Danube's order_by (default `hostname,-created`); an unknown field is 412. */
function parseOrderBy(raw: unknown): repo.BkpSortTerm[] {
  const v = lastValue(raw);
  return parseDanubeOrderBy(v === undefined || v === null ? '' : String(v), Object.keys(ORDER_FIELDS), 'hostname,-created').map((o) => ({ column: ORDER_FIELDS[o.field]!, desc: o.desc }));
}

async function list(ctx: AppContext, caller: Caller, scope: repo.BkpDefScope, data: Readonly<Record<string, unknown>>) {
  const order = parseOrderBy(data['order_by']);
  const extended = parseBool(lastValue(data['extended']));
  if (!parseBool(lastValue(data['full'])) && !extended) return repo.listBkpDefNames(ctx.db, scope, order);
  const rows = await repo.listBkpDefs(ctx.db, scope, order, extended);
  if (rows.length === 0) return [];
  const disks = await repo.disksOfScope(ctx.db, scope);
  return rows.map((r) => bkpDefObject(r, disks, extended, caller.isAdmin));
}

/** `GET /vm/define/backup`: every definition of the DC; non-admins see their own VMs' only. */
export async function listAllBkpDefs(ctx: AppContext, caller: Caller, data: Readonly<Record<string, unknown>>) {
  requireBackupsEnabled(caller);
  return list(ctx, caller, caller.isAdmin ? { dcId: caller.dc.id } : { dcId: caller.dc.id, ownerId: caller.user.id }, data);
}

/** `GET /vm/<vm>/define/backup`, optionally filtered by `disk_id` (412 when invalid). */
export async function listVmBkpDefs(ctx: AppContext, caller: Caller, vmName: string, data: Readonly<Record<string, unknown>>, onVm: (vm: VmRow) => void) {
  requireBackupsEnabled(caller);
  const vm = await findVm(ctx.db, caller, vmName);
  onVm(vm);
  const raw = lastValue(data['disk_id']);
  const scope = raw === undefined ? { vmUuid: vm.uuid } : { vmUuid: vm.uuid, diskRealId: resolveDisk(await vmDisks(ctx.db, vm.uuid), raw).real_id };
  return list(ctx, caller, scope, data);
}

/** `GET /node/<node>/define/backup` (SuperAdmin, not DC-bound): the definitions onto that node. */
export async function listNodeBkpDefs(ctx: AppContext, caller: Caller, hostname: string, data: Readonly<Record<string, unknown>>) {
  requireBackupsEnabled(caller);
  const node = await ctx.db.selectFrom('node').select('id').where('hostname', '=', hostname).executeTakeFirst();
  if (!node) throw new ApiError(404, 'Node not found');
  return list(ctx, caller, { nodeId: node.id }, data);
}

// ---------------------------------------------------------------------------------------------
// One definition

export interface BkpDefTarget {
  readonly vm: VmRow;
  readonly disks: readonly VmDiskRow[];
  readonly disk: VmDiskRow;
  readonly define: repo.BkpDefListRow | undefined;
}

/** The check order of snapshot definitions (spec 4.3 steps 2–6), with backup's messages. */
export async function resolveBkpDefTarget(
  ctx: AppContext,
  caller: Caller,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  vmName: string,
  bkpdef: string,
  data: Readonly<Record<string, unknown>>,
  onVm: (vm: VmRow) => void,
): Promise<BkpDefTarget> {
  const write = method !== 'GET';
  requireBackupsEnabled(caller);
  const vm = await findVm(ctx.db, caller, vmName);
  onVm(vm);
  if (write) requireNodeOnline(await vmNode(ctx.db, vm));
  const disks = await vmDisks(ctx.db, vm.uuid);
  const disk = resolveDisk(disks, method === 'GET' ? lastValue(data['disk_id']) : data['disk_id']);
  const define = await repo.findBkpDef(ctx.db, vm.uuid, disk.real_id, bkpdef, method === 'GET' && parseBool(lastValue(data['extended'])));
  if (method === 'POST') {
    if (define) throw new ApiError(406, BKPDEF_EXISTS);
  } else if (!define) {
    throw new ApiError(404, BKPDEF_NOT_FOUND);
  }
  if (write) requireOperational(vm);
  return { vm, disks, disk, define };
}

export function showBkpDef(caller: Caller, t: BkpDefTarget, data: Readonly<Record<string, unknown>>): BkpDefObject {
  return bkpDefObject(t.define!, t.disks, parseBool(lastValue(data['extended'])), caller.isAdmin);
}

function rules(caller: Caller, vm: VmRow, post: boolean) {
  const s = backupSettings(caller.dc);
  const [min, max] = s.VMS_VM_BACKUP_LIMIT === null ? [RETENTION_MIN, RETENTION_MAX] : [1, Number(s.VMS_VM_BACKUP_LIMIT)];
  return {
    ...(post ? { name: { kind: 'string', required: true, min: 1, max: 8, pattern: NAME_RE } as const } : {}),
    ...(post ? { disk_id: { kind: 'int', min: 1, max: vm.brand === 'bhyve' ? 6 : 2 } as const } : {}),
    ...(post ? { type: { kind: 'int', required: true } as const } : {}),
    node: { kind: 'string', required: true, max: 255 },
    zpool: { kind: 'string', required: true, max: 64 },
    desc: { kind: 'string', max: 128, forbidden: NOTE_FORBIDDEN, nullAsEmpty: true },
    bwlimit: { kind: 'int', min: 0, max: 2147483647 },
    active: { kind: 'bool' },
    schedule: { kind: 'string', required: true, max: 100, check: checkSchedule },
    retention: { kind: 'int', required: true, min, max },
    compression: { kind: 'int', required: true },
    ...(isHvm(vm) ? { fsfreeze: { kind: 'bool' } as const } : {}),
    tz: { kind: 'string', check: (v: string) => (isValidTimeZone(v) ? null : INVALID_TZ) },
    catchup: { kind: 'bool' },
  } as const satisfies Record<string, Rule>;
}

interface Checked {
  values: Record<string, unknown>;
  nodeId: number;
  nodeHostname: string;
  storageId: number;
}

/**
 * Field rules, then the cross-field rules Danube's validate() adds (node, zpool on the node) and
 * esnap's type 1 rule; every error is collected and answered in field order, nothing is written.
 */
async function check(ctx: AppContext, caller: Caller, t: BkpDefTarget, input: Record<string, unknown>, post: boolean): Promise<Checked> {
  const rs: Record<string, Rule> = rules(caller, t.vm, post);
  const extra: FieldErrors = {};
  const rest = { ...input };
  let bwlimitNull = false;
  if (own(input, 'bwlimit') && (input['bwlimit'] === null || input['bwlimit'] === '')) {
    bwlimitNull = true; // Danube: an optional integer may be null (no limit)
    delete rest['bwlimit'];
  }
  if (own(input, 'tz') && (input['tz'] === null || input['tz'] === '')) {
    extra['tz'] = [INVALID_TZ];
    delete rest['tz'];
  }
  const r = validateFields(rest, rs, { partial: !post });
  const errors: FieldErrors = r.ok ? { ...extra } : { ...r.errors, ...extra };
  const v: Record<string, unknown> = r.ok ? { ...r.value } : {};
  // With field errors validateFields returns no values; the valid fields' values are still needed
  // for the node/zpool/type checks, so that every error of the request is answered at once.
  if (!r.ok) for (const k of Object.keys(rs)) if (!errors[k] && own(rest, k)) v[k] = (validateFields({ [k]: rest[k] }, { [k]: rs[k]! }, { partial: true }) as { value: Record<string, unknown> }).value?.[k];
  if (bwlimitNull) v['bwlimit'] = null;
  for (const [k, choices] of [['type', TYPES], ['compression', COMPRESSIONS]] as const) {
    const n = v[k] === undefined ? undefined : parseIntField(v[k]);
    if (!errors[k] && n !== undefined && n !== null && !choices.has(n)) errors[k] = [invalidChoice(n)];
  }

  const d = t.define;
  const nodeName = (v['node'] as string | undefined) ?? d?.node_hostname;
  const zpool = (v['zpool'] as string | undefined) ?? d?.storage_name;
  let node: { id: number; hostname: string } | undefined;
  let storage: { id: number; driver: string } | undefined;
  if (!errors['node'] && nodeName !== undefined) {
    node = await repo.findBackupNode(ctx.db, nodeName);
    if (!node) errors['node'] = [nodeDoesNotExist(nodeName)];
  }
  if (node && !errors['zpool'] && zpool !== undefined) {
    storage = await repo.findNodeStorage(ctx.db, node.id, zpool);
    if (!storage) errors['zpool'] = [ZPOOL_NOT_ON_NODE];
  }
  const type = (v['type'] as number | undefined) ?? d?.type;
  if (storage && type === TYPE_DATASET && !errors['type']) {
    const source = await diskStorage(ctx.db, t.disk);
    // Drivers that send and receive natively, into a backup storage of the same one (the type 1 engine's table).
    if (!datasetBackupSupported(source.driver, storage.driver)) errors['type'] = [TYPE_DATASET_UNSUPPORTED];
  }
  if (Object.keys(errors).length > 0) {
    // Danube's field order; `type` errors also on PUT (a move to a storage that cannot receive).
    const ordered: FieldErrors = {};
    for (const k of ['name', 'disk_id', 'type', ...Object.keys(rs)]) if (errors[k]) ordered[k] = errors[k]!;
    throw new FailureError(ordered);
  }
  return { values: v, nodeId: node?.id ?? d!.node_id, nodeHostname: node?.hostname ?? d!.node_hostname, storageId: storage?.id ?? d!.storage_id };
}

const nextRun = nextRunOf;
const logEntry = definitionLogEntry;

const LOGGED = ['type', 'node', 'zpool', 'desc', 'bwlimit', 'active', 'schedule', 'retention', 'compression', 'fsfreeze', 'tz', 'catchup'] as const;

async function reread(ctx: AppContext, caller: Caller, t: BkpDefTarget, name: string): Promise<BkpDefObject> {
  const row = await repo.findBkpDef(ctx.db, t.vm.uuid, t.disk.real_id, name);
  if (!row) throw new ApiError(404, BKPDEF_NOT_FOUND);
  return bkpDefObject(row, t.disks, false, caller.isAdmin);
}

/** POST: predefined schedules for hourly/daily/…, DC defaults for zpool and compression, then checks. */
export async function createBkpDef(ctx: AppContext, caller: Caller, t: BkpDefTarget, name: string, data: Readonly<Record<string, unknown>>): Promise<BkpDefObject> {
  const s = backupSettings(caller.dc);
  const input: Record<string, unknown> = {
    type: TYPE_DATASET,
    zpool: s.VMS_STORAGE_DEFAULT,
    compression: s.VMS_VM_BACKUP_COMPRESSION_DEFAULT,
    ...(cronDefaults(name, randomInt) ?? {}),
    ...data,
    name,
  };
  if (!own(data, 'disk_id')) delete input['disk_id'];
  if (!isHvm(t.vm)) delete input['fsfreeze'];
  const c = await check(ctx, caller, t, input, true);
  const v = c.values;
  const now = ctx.clock.now().toISOString();
  const active = (v['active'] as boolean | undefined) ?? true;
  const schedule = v['schedule'] as string;
  const tz = (v['tz'] as string | undefined) ?? 'UTC';
  const row: Insertable<BackupDefineTable> = {
    vm_uuid: t.vm.uuid,
    disk_real_id: t.disk.real_id,
    name,
    type: v['type'] as number,
    node_id: c.nodeId,
    storage_id: c.storageId,
    desc: (v['desc'] as string | undefined) ?? '',
    bwlimit: (v['bwlimit'] as number | null | undefined) ?? null,
    schedule,
    retention: v['retention'] as number,
    active: active ? 1 : 0,
    compression: v['compression'] as number,
    fsfreeze: v['fsfreeze'] === true ? 1 : 0,
    tz,
    catchup: v['catchup'] === false ? 0 : 1,
    next_run: nextRun(ctx, active, schedule, tz),
    last_run: null,
    last_success: null,
    last_error: null,
    created: now,
    changed: now,
  };
  const stored: Record<string, unknown> = { ...row, node: c.nodeHostname, zpool: v['zpool'], active, fsfreeze: row.fsfreeze === 1, catchup: row.catchup === 1 };
  const pairs: Array<readonly [string, unknown]> = [
    ['disk_id', t.disks.indexOf(t.disk) + 1],
    ['bkpdef', name],
    ...LOGGED.filter((k) => k !== 'fsfreeze' || isHvm(t.vm)).map((k) => [k, stored[k]] as const),
  ];
  const limit = s.VMS_VM_BACKUP_DEFINE_LIMIT;
  try {
    await ctx.db.transaction().execute(async (trx) => {
      await lockVmForDefines(trx, t.vm.uuid);
      if (limit !== null && Number(limit) <= (await repo.countVmBkpDefs(trx, t.vm.uuid))) {
        throw new FailureError({ non_field_errors: [BKPDEF_LIMIT_REACHED] });
      }
      await repo.insertBkpDef(trx, row);
      await writeLog(trx, logEntry(ctx, caller, t.vm, LOG_BKPDEF_CREATE, pairs));
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ApiError(406, BKPDEF_EXISTS);
    throw err;
  }
  return reread(ctx, caller, t, name);
}

/** PUT: a partial update; `name`, `disk_id` and `type` cannot change (Danube: type is read-only). */
export async function updateBkpDef(ctx: AppContext, caller: Caller, t: BkpDefTarget, data: Readonly<Record<string, unknown>>): Promise<BkpDefObject> {
  const d = t.define!;
  const input: Record<string, unknown> = { ...data };
  delete input['type'];
  if (!isHvm(t.vm)) delete input['fsfreeze'];
  const c = await check(ctx, caller, t, input, false);
  const v = c.values;
  const patch: Updateable<BackupDefineTable> = { changed: ctx.clock.now().toISOString(), node_id: c.nodeId, storage_id: c.storageId };
  for (const k of ['desc', 'bwlimit', 'schedule', 'retention', 'compression', 'tz'] as const) if (v[k] !== undefined) (patch as Record<string, unknown>)[k] = v[k];
  if (v['active'] !== undefined) patch.active = v['active'] ? 1 : 0;
  if (v['fsfreeze'] !== undefined) patch.fsfreeze = v['fsfreeze'] ? 1 : 0;
  if (v['catchup'] !== undefined) patch.catchup = v['catchup'] ? 1 : 0;
  const active = (v['active'] as boolean | undefined) ?? d.active === 1;
  const schedule = (v['schedule'] as string | undefined) ?? d.schedule;
  const tz = (v['tz'] as string | undefined) ?? d.tz;
  if (active !== (d.active === 1) || schedule !== d.schedule || tz !== d.tz) patch.next_run = nextRun(ctx, active, schedule, tz);
  const pairs: Array<readonly [string, unknown]> = [
    ['disk_id', t.disks.indexOf(t.disk) + 1],
    ['bkpdef', d.name],
    ...LOGGED.filter((k) => v[k] !== undefined).map((k) => [k, v[k]] as const),
  ];
  await ctx.db.transaction().execute(async (trx) => {
    if (!(await repo.updateBkpDef(trx, d.id, patch))) throw new ApiError(404, BKPDEF_NOT_FOUND);
    await writeLog(trx, logEntry(ctx, caller, t.vm, LOG_BKPDEF_UPDATE, pairs));
  });
  return reread(ctx, caller, t, d.name);
}

/** DELETE: the definition goes; its backups stay, with no definition (Danube: define set null). */
export async function deleteBkpDef(ctx: AppContext, caller: Caller, t: BkpDefTarget): Promise<null> {
  const d = t.define!;
  const pairs: Array<readonly [string, unknown]> = [
    ['disk_id', t.disks.indexOf(t.disk) + 1],
    ['bkpdef', d.name],
  ];
  await ctx.db.transaction().execute(async (trx) => {
    await trx.updateTable('backup').set({ define_id: null }).where('define_id', '=', d.id).execute();
    await repo.deleteBkpDef(trx, d.id);
    await writeLog(trx, logEntry(ctx, caller, t.vm, LOG_BKPDEF_DELETE, pairs));
  });
  return null;
}
