/**
 * Snapshot definitions (spec 2.2, 4.1–4.3, 6.2, 8.2): the lookups in Danube's check order, field
 * validation, the DEFINE_LIMIT, writes in one transaction with their task-log entry, and the
 * `next_run` the scheduler picks definitions up by.
 *
 * esnap's optional fields (`tz`, `catchup`, `retention_days`) default to Danube's behaviour: the
 * schedule is read in UTC, missed slots are caught up, and only the count retention applies.
 */
import { randomInt } from 'node:crypto';
import type { Insertable, Updateable } from 'kysely';
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import type { SnapshotDefineTable, VmDiskRow, VmRow } from '../db/schema.js';
import { FailureError, apiError } from '../domain/errors.js';
import { checkSchedule, cronDefaults, isValidTimeZone } from '../domain/cron.js';
import { NAME_RE, NOTE_FORBIDDEN, parseBool, validateFields, type FieldErrors, type Rule } from '../domain/validate.js';
import { dcSettings } from '../accounts/dc.settings.js';
import { writeLog } from '../tasks/task-log.js';
import { findVm, requireNodeOnline, requireOperational, requireSnapshotsEnabled, resolveDisk, vmDisks, vmNode } from '../vms/vm.lookup.js';
import {
  countVmDefines,
  deleteDefine,
  findDefine,
  insertDefine,
  lockVmForDefines,
  updateDefine,
  type DefineListRow,
} from './define.repository.js';
import { isUniqueViolation } from '../db/capabilities.js';
import { defineObject, type DefineObject } from './define.output.js';
import { definitionLogEntry, nextRunOf } from './define.common.js';

export const LOG_CREATE = 'Create server snapshot definition';
export const LOG_UPDATE = 'Update server snapshot definition';
export const LOG_DELETE = 'Delete server snapshot definition';

const RETENTION_MIN = 0;
const RETENTION_MAX = 65536;
/** esnap's bound for `retention_days` (100 years); it also keeps the value inside a 32-bit column. */
export const RETENTION_DAYS_MAX = 36500;
export const INVALID_TZ = 'Invalid time zone.';
export const DEFINE_LIMIT_REACHED = 'Maximum number of snapshot definitions reached.';

/** Brands whose definitions store `fsfreeze` (Danube: `vm.is_hvm()`). */
const HVM_BRANDS: ReadonlySet<string> = new Set(['kvm', 'bhyve', 'hvm']);

function isHvm(vm: VmRow): boolean {
  return HVM_BRANDS.has(vm.brand);
}

/** Highest array disk id a definition may name (spec 2.4: 2, or 6 for bhyve). */
function definitionDiskMax(vm: VmRow): number {
  return vm.brand === 'bhyve' ? 6 : 2;
}

// Query strings (the lists are in define.list.ts)

/** Query strings may repeat a key; Danube's QueryDict.get answers with the last value. */
export function lastValue(v: unknown): unknown {
  return Array.isArray(v) ? v[v.length - 1] : v;
}

// ---------------------------------------------------------------------------------------------
// One definition (4.3)

export interface DefineTarget {
  readonly vm: VmRow;
  readonly disks: readonly VmDiskRow[];
  readonly disk: VmDiskRow;
  /** The existing definition; absent only for POST. */
  readonly define: DefineListRow | undefined;
}

/**
 * Steps 2–6 of spec 4.3, in order (step 1, the permission, is the route's): module switch, VM
 * (and for writes its node), `disk_id`, the definition (404, or 406 for POST), and for writes the
 * VM status. `onVm` learns the VM as soon as it is found (dummy task ids name its owner).
 */
export async function resolveTarget(
  ctx: AppContext,
  caller: Caller,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  hostnameOrUuid: string,
  snapdef: string,
  data: Readonly<Record<string, unknown>>,
  onVm: (vm: VmRow) => void,
): Promise<DefineTarget> {
  const write = method !== 'GET';
  requireSnapshotsEnabled(caller);
  const vm = await findVm(ctx.db, caller, hostnameOrUuid);
  onVm(vm);
  if (write) requireNodeOnline(await vmNode(ctx.db, vm));
  const disks = await vmDisks(ctx.db, vm.uuid);
  const disk = resolveDisk(disks, method === 'GET' ? lastValue(data['disk_id']) : data['disk_id']);
  const extended = method === 'GET' && parseBool(lastValue(data['extended']));
  const define = await findDefine(ctx.db, vm.uuid, disk.real_id, snapdef, extended);
  if (method === 'POST') {
    if (define) throw apiError('defineExists');
  } else if (!define) {
    throw apiError('defineNotFound');
  }
  if (write) requireOperational(vm);
  return { vm, disks, disk, define };
}

export function showDefine(target: DefineTarget, data: Readonly<Record<string, unknown>>): DefineObject {
  const extended = parseBool(lastValue(data['extended']));
  return defineObject(target.define!, target.disks, extended);
}

function retentionBounds(caller: Caller): { min: number; max: number } {
  const auto = dcSettings(caller.dc).VMS_VM_SNAPSHOT_LIMIT_AUTO;
  return auto === null || auto === undefined ? { min: RETENTION_MIN, max: RETENTION_MAX } : { min: 1, max: Number(auto) };
}

/** The updatable fields, in output order (field errors keep it). */
export function updatableRules(caller: Caller, vm: VmRow) {
  const { min, max } = retentionBounds(caller);
  return {
    desc: { kind: 'string', max: 128, forbidden: NOTE_FORBIDDEN, nullAsEmpty: true },
    active: { kind: 'bool' },
    schedule: { kind: 'string', required: true, max: 100, check: checkSchedule },
    retention: { kind: 'int', required: true, min, max },
    ...(isHvm(vm) ? { fsfreeze: { kind: 'bool' } as const } : {}),
    tz: { kind: 'string', check: (v: string) => (isValidTimeZone(v) ? null : INVALID_TZ) },
    catchup: { kind: 'bool' },
    retention_days: { kind: 'int', min: 1, max: RETENTION_DAYS_MAX },
  } as const satisfies Record<string, Rule>;
}

export interface DefineValues {
  name?: string;
  disk_id?: number;
  desc?: string;
  active?: boolean;
  schedule?: string;
  retention?: number;
  fsfreeze?: boolean;
  tz?: string;
  catchup?: boolean;
  retention_days?: number | null;
}

/**
 * Runs the rules over the input, plus what the generic rules cannot say: an empty or null `tz` is
 * not a zone, and a null or empty `retention_days` means "no age limit". Errors keep rule order.
 */
export function validateDefine(input: Record<string, unknown>, rules: Record<string, Rule>, partial: boolean): DefineValues {
  const own = (k: string): boolean => Object.prototype.hasOwnProperty.call(input, k);
  const rest: Record<string, unknown> = { ...input };
  const extra: FieldErrors = {};
  let retentionDaysNull = false;
  if (own('tz') && (input['tz'] === null || input['tz'] === '')) {
    extra['tz'] = [INVALID_TZ];
    delete rest['tz'];
  }
  if (own('retention_days') && (input['retention_days'] === null || input['retention_days'] === '')) {
    retentionDaysNull = true;
    delete rest['retention_days'];
  }
  const r = validateFields(rest, rules, { partial });
  const errors: FieldErrors = r.ok ? {} : r.errors;
  if (!r.ok || Object.keys(extra).length > 0) {
    const ordered: FieldErrors = {};
    // Rule order, except that Danube printed `retention` before `schedule`.
    const keys = Object.keys(rules);
    const [si, ri] = [keys.indexOf('schedule'), keys.indexOf('retention')];
    if (si >= 0 && ri > si) keys.splice(si, 0, ...keys.splice(ri, 1));
    for (const k of keys) {
      const e = errors[k] ?? extra[k];
      if (e) ordered[k] = e;
    }
    throw new FailureError(ordered);
  }
  const values = r.value as DefineValues;
  if (retentionDaysNull) values.retention_days = null;
  return values;
}

const nextRun = nextRunOf;
const logEntry = definitionLogEntry;

const LOGGED_FIELDS = ['desc', 'active', 'schedule', 'retention', 'fsfreeze', 'tz', 'catchup', 'retention_days'] as const;

async function reread(ctx: AppContext, target: DefineTarget, name: string): Promise<DefineObject> {
  const row = await findDefine(ctx.db, target.vm.uuid, target.disk.real_id, name);
  if (!row) throw apiError('defineNotFound'); // deleted by a concurrent request in between
  return defineObject(row, target.disks, false);
}

/**
 * POST: predefined defaults first (spec 8.2), the request's values over them, the URL's name;
 * field validation, then (only without field errors) the DEFINE_LIMIT.
 */
export async function createDefine(
  ctx: AppContext,
  caller: Caller,
  target: DefineTarget,
  name: string,
  data: Readonly<Record<string, unknown>>,
): Promise<DefineObject> {
  const { vm, disk, disks } = target;
  const input: Record<string, unknown> = { ...(cronDefaults(name, randomInt) ?? {}), ...data, name };
  // `disk_id` is validated only when given; absent, it is the default disk 1.
  if (!Object.prototype.hasOwnProperty.call(data, 'disk_id')) delete input['disk_id'];
  if (!isHvm(vm)) delete input['fsfreeze']; // only HVM definitions store it; others ignore it
  const rules = {
    name: { kind: 'string', required: true, min: 1, max: 8, pattern: NAME_RE },
    disk_id: { kind: 'int', min: 1, max: definitionDiskMax(vm) },
    ...updatableRules(caller, vm),
  } as const satisfies Record<string, Rule>;
  const v = validateDefine(input, rules, false);

  const now = ctx.clock.now().toISOString();
  const active = v.active ?? true;
  const schedule = v.schedule as string;
  const tz = v.tz ?? 'UTC';
  const values: Insertable<SnapshotDefineTable> = {
    vm_uuid: vm.uuid,
    disk_real_id: disk.real_id,
    name,
    desc: v.desc ?? '',
    schedule,
    retention: v.retention as number,
    active: active ? 1 : 0,
    fsfreeze: v.fsfreeze === true ? 1 : 0,
    tz,
    catchup: (v.catchup ?? true) ? 1 : 0,
    retention_days: v.retention_days ?? null,
    next_run: nextRun(ctx, active, schedule, tz),
    last_run: null,
    last_success: null,
    last_error: null,
    created: now,
    changed: now,
  };
  const limit = dcSettings(caller.dc).VMS_VM_SNAPSHOT_DEFINE_LIMIT;
  const stored: Record<string, unknown> = {
    desc: values.desc,
    active,
    schedule,
    retention: values.retention,
    fsfreeze: values.fsfreeze === 1,
    tz,
    catchup: values.catchup === 1,
    retention_days: values.retention_days,
  };
  const pairs: Array<readonly [string, unknown]> = [
    ['disk_id', disks.indexOf(disk) + 1],
    ['snapdef', name],
    ...LOGGED_FIELDS.filter((k) => k !== 'fsfreeze' || isHvm(vm)).map((k) => [k, stored[k]] as const),
  ];
  try {
    await ctx.db.transaction().execute(async (trx) => {
      await lockVmForDefines(trx, vm.uuid);
      if (limit !== null && limit !== undefined && Number(limit) <= (await countVmDefines(trx, vm.uuid))) {
        throw new FailureError({ non_field_errors: [DEFINE_LIMIT_REACHED] });
      }
      await insertDefine(trx, values);
      await writeLog(trx, logEntry(ctx, caller, vm, LOG_CREATE, pairs));
    });
  } catch (err) {
    // A concurrent POST of the same definition won the race: answer as if it had come first.
    if (isUniqueViolation(err)) throw apiError('defineExists');
    throw err;
  }
  return reread(ctx, target, name);
}

/** PUT: a partial update; `name` and `disk_id` cannot change. */
export async function updateDefinition(
  ctx: AppContext,
  caller: Caller,
  target: DefineTarget,
  data: Readonly<Record<string, unknown>>,
): Promise<DefineObject> {
  const { vm, disk, disks } = target;
  const define = target.define!;
  const input: Record<string, unknown> = { ...data };
  if (!isHvm(vm)) delete input['fsfreeze'];
  const v = validateDefine(input, updatableRules(caller, vm), true);

  const patch: Updateable<SnapshotDefineTable> = { changed: ctx.clock.now().toISOString() };
  if (v.desc !== undefined) patch.desc = v.desc;
  if (v.active !== undefined) patch.active = v.active ? 1 : 0;
  if (v.schedule !== undefined) patch.schedule = v.schedule;
  if (v.retention !== undefined) patch.retention = v.retention;
  if (v.fsfreeze !== undefined) patch.fsfreeze = v.fsfreeze ? 1 : 0;
  if (v.tz !== undefined) patch.tz = v.tz;
  if (v.catchup !== undefined) patch.catchup = v.catchup ? 1 : 0;
  if (v.retention_days !== undefined) patch.retention_days = v.retention_days;

  const active = v.active ?? define.active === 1;
  const schedule = v.schedule ?? define.schedule;
  const tz = v.tz ?? define.tz;
  // Only a change of when it fires moves `next_run`: recomputing it on a `desc` change would
  // skip a slot that is due but not yet claimed by the scheduler.
  if (active !== (define.active === 1) || schedule !== define.schedule || tz !== define.tz) {
    patch.next_run = nextRun(ctx, active, schedule, tz);
  }

  const submitted = v as Record<string, unknown>;
  const pairs: Array<readonly [string, unknown]> = [
    ['disk_id', disks.indexOf(disk) + 1],
    ['snapdef', define.name],
    ...LOGGED_FIELDS.filter((k) => submitted[k] !== undefined).map((k) => [k, submitted[k]] as const),
  ];
  await ctx.db.transaction().execute(async (trx) => {
    // Deleted since the lookup: 404, and no log entry for an update that did not happen.
    if (!(await updateDefine(trx, define.id, patch))) throw apiError('defineNotFound');
    await writeLog(trx, logEntry(ctx, caller, vm, LOG_UPDATE, pairs));
  });
  return reread(ctx, target, define.name);
}

/** DELETE: the definition goes, its snapshots stay with no definition. */
export async function deleteDefinition(ctx: AppContext, caller: Caller, target: DefineTarget): Promise<null> {
  const { vm, disk, disks } = target;
  const define = target.define!;
  const pairs: Array<readonly [string, unknown]> = [
    ['disk_id', disks.indexOf(disk) + 1],
    ['snapdef', define.name],
  ];
  await ctx.db.transaction().execute(async (trx) => {
    await deleteDefine(trx, define.id);
    await writeLog(trx, logEntry(ctx, caller, vm, LOG_DELETE, pairs));
  });
  return null;
}
