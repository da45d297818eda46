/**
 * Lists of snapshot definitions (spec 4.1, 4.2): every definition of the DC, or one VM's
 * (optionally one disk's), as names or objects, in Danube's `order_by`.
 */
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import type { VmRow } from '../db/schema.js';
import { ApiError } from '../domain/errors.js';
import { parseBool } from '../domain/validate.js';
import { findVm, requireSnapshotsEnabled, resolveDisk, vmDisks } from '../vms/vm.lookup.js';
import { disksInScope, listDefineNames, listDefines, type DefineScope, type SortColumn, type SortTerm } from './define.repository.js';
import { defineObjects, type DefineObject } from './define.output.js';
import { lastValue } from './define.service.js';

// In the order Danube's 412 message lists them.
const ORDER_FIELDS: Readonly<Record<string, SortColumn>> = {
  hostname: 'vm.hostname',
  name: 'd.name',
  disk_id: 'd.disk_real_id',
  created: 'd.id',
};
const DEFAULT_ORDER: readonly SortTerm[] = [
  { column: 'vm.hostname', desc: false },
  { column: 'd.id', desc: true },
];

/**
 * Danube's `order_by`: comma-separated fields, each optionally prefixed by `-` or `+` (both
 * descending, as in Danube); empty or absent means the default; an unknown field is 412.
 *
 * @example parseOrderBy('-name,hostname') // [{column:'d.name',desc:true},{column:'vm.hostname',desc:false}]
 */
export function parseOrderBy(raw: unknown): SortTerm[] {
  const v = lastValue(raw);
  if (v === undefined || v === null || v === '') return [...DEFAULT_ORDER];
  const terms: SortTerm[] = [];
  for (const part of String(v).split(',')) {
    let f = part.trim();
    const desc = f.startsWith('-') || f.startsWith('+');
    if (desc) f = f.slice(1);
    const column = Object.prototype.hasOwnProperty.call(ORDER_FIELDS, f) ? ORDER_FIELDS[f] : undefined;
    if (column === undefined) {
      throw new ApiError(412, `Invalid order_by; Possible sort fields are: ${Object.keys(ORDER_FIELDS).join(', ')}`);
    }
    terms.push({ column, desc });
  }
  return terms;
}

async function list(ctx: AppContext, scope: DefineScope, data: Readonly<Record<string, unknown>>): Promise<string[] | DefineObject[]> {
  const order = parseOrderBy(data['order_by']);
  // esnap decision: `extended` is a proper boolean (spec 3.6 quirk not kept); it forces objects.
  const extended = parseBool(lastValue(data['extended']));
  const full = parseBool(lastValue(data['full']));
  if (!full && !extended) return listDefineNames(ctx.db, scope, order);
  const rows = await listDefines(ctx.db, scope, order, extended);
  if (rows.length === 0) return [];
  return defineObjects(rows, await disksInScope(ctx.db, scope), extended);
}

/** `GET /vm/define/snapshot`: every definition in the DC; non-admins see their own VMs only. */
export async function listAllDefines(ctx: AppContext, caller: Caller, data: Readonly<Record<string, unknown>>): Promise<string[] | DefineObject[]> {
  requireSnapshotsEnabled(caller);
  const scope: DefineScope = caller.isAdmin ? { dcId: caller.dc.id } : { dcId: caller.dc.id, ownerId: caller.user.id };
  return list(ctx, scope, data);
}

/** `GET /vm/<vm>/define/snapshot`, optionally filtered by `disk_id` (412 when invalid). */
export async function listVmDefines(
  ctx: AppContext,
  caller: Caller,
  hostnameOrUuid: string,
  data: Readonly<Record<string, unknown>>,
  onVm: (vm: VmRow) => void,
): Promise<string[] | DefineObject[]> {
  requireSnapshotsEnabled(caller);
  const vm = await findVm(ctx.db, caller, hostnameOrUuid);
  onVm(vm);
  const rawDisk = lastValue(data['disk_id']);
  let diskRealId: number | undefined;
  if (rawDisk !== undefined) diskRealId = resolveDisk(await vmDisks(ctx.db, vm.uuid), rawDisk).real_id;
  return list(ctx, diskRealId === undefined ? { vmUuid: vm.uuid } : { vmUuid: vm.uuid, diskRealId }, data);
}
