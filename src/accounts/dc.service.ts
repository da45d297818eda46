/**
 * DCs and their settings (spec 3.4, 9). Writes run in one transaction with their task-log entry.
 *
 * Invariant kept here: a DC holding VMs cannot be deleted (no orphans); `main` neither.
 */
import type { AppContext } from '../app-context.js';
import { DEFAULT_DC } from '../domain/system.js';
import type { DcRow, UserRow } from '../db/schema.js';
import type { Caller } from './caller.js';
import { isDcAdmin } from './caller.js';
import { ApiError, apiError } from '../domain/errors.js';
import { NAME_RE, parseBool, validateFields, type FieldErrors, type Rule } from '../domain/validate.js';
import { logDetail, type LogObject } from '../tasks/task-log.js';
import { DEFAULT_DC_SETTINGS, dcSettings, type DcSnapshotSettings } from './dc.settings.js';
import { checkName, fail, logSync, notExist, validateEach } from './account.write.js';
import * as repo from './account.repository.js';
import type { DcObject } from './account.repository.js';

export async function canAccessDc(ctx: AppContext, user: UserRow, dc: DcRow): Promise<boolean> {
  return dc.access === 1 || dc.id === user.current_dc_id || isDcAdmin(ctx, user, dc);
}

const DC_RULES = {
  alias: { kind: 'string', required: true, max: 32 },
  access: { kind: 'int', required: true },
  owner: { kind: 'string', required: true, max: 254 },
} satisfies Record<string, Rule>;
const DC_ACCESS = [1, 3] as const; // public, private

export async function dcObject(ctx: AppContext, dc: DcRow): Promise<DcObject> {
  return (await repo.dcObjects(ctx.db, [dc]))[0]!;
}

export async function listDcs(ctx: AppContext, caller: Caller, full: boolean): Promise<string[] | DcObject[]> {
  const dcs = await repo.accessibleDcs(ctx.db, caller.user);
  return full ? repo.dcObjects(ctx.db, dcs) : dcs.map((d) => d.name);
}

/** The DC named in the URL if the caller can access it; 404 `Datacenter not found` otherwise. */
export async function accessibleDc(ctx: AppContext, caller: Caller, name: string): Promise<DcRow> {
  const dc = await repo.findDc(ctx.db, name);
  if (!dc || !(caller.isSuperAdmin || (await canAccessDc(ctx, caller.user, dc)))) throw apiError('dcNotFound');
  return dc;
}

async function dcChanges(ctx: AppContext, data: Record<string, unknown>, errors: FieldErrors): Promise<{ alias?: string; access?: number; owner_id?: number }> {
  const values = validateEach(data, DC_RULES, errors);
  const out: { alias?: string; access?: number; owner_id?: number } = {};
  if (values.alias !== undefined) out.alias = values.alias;
  if (values.access !== undefined) {
    if ((DC_ACCESS as readonly number[]).includes(values.access)) out.access = values.access;
    else errors['access'] = [`Select a valid choice. ${values.access} is not one of the available choices.`];
  }
  if (values.owner !== undefined) {
    const owner = await repo.findUser(ctx.db, values.owner);
    if (owner) out.owner_id = owner.id;
    else errors['owner'] = [notExist('username', values.owner)];
  }
  return out;
}

export function dcLog(dc: DcRow): LogObject {
  return { type: 'dc', name: dc.name, alias: dc.alias, pk: String(dc.id) };
}

export async function createDc(ctx: AppContext, caller: Caller, name: string, data: Record<string, unknown>): Promise<DcObject> {
  if (await repo.findDc(ctx.db, name)) throw apiError('dcExists');
  const errors: FieldErrors = {};
  checkName(name, 'name', 16, NAME_RE, errors);
  const changes = await dcChanges(ctx, data, errors);
  fail(errors);
  try {
    const dc = await ctx.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('dc')
        .values({
          name,
          alias: changes.alias ?? name,
          access: changes.access ?? 3,
          owner_id: changes.owner_id ?? caller.user.id,
          settings: '{}',
          created: ctx.clock.now().toISOString(),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await logSync(trx, ctx, caller, row.id, 'Create datacenter', logDetail([['alias', row.alias], ['access', row.access]]), dcLog(row));
      return row;
    });
    return await dcObject(ctx, dc);
  } catch (err) {
    if (await repo.findDc(ctx.db, name)) throw apiError('dcExists');
    throw err;
  }
}

export async function updateDc(ctx: AppContext, caller: Caller, dc: DcRow, data: Record<string, unknown>): Promise<DcObject> {
  const errors: FieldErrors = {};
  const changes = await dcChanges(ctx, data, errors);
  fail(errors);
  const row = await ctx.db.transaction().execute(async (trx) => {
    const updated = Object.keys(changes).length === 0
      ? dc
      : await trx.updateTable('dc').set(changes).where('id', '=', dc.id).returningAll().executeTakeFirst();
    if (!updated) throw apiError('dcNotFound'); // deleted since the lookup
    const pairs = Object.entries(changes).map(([k, v]) => (k === 'owner_id' ? (['owner', data['owner']] as const) : ([k, v] as const)));
    await logSync(trx, ctx, caller, dc.id, 'Update datacenter', logDetail(pairs), dcLog(updated));
    return updated;
  });
  return dcObject(ctx, row);
}

export async function deleteDc(ctx: AppContext, caller: Caller, dc: DcRow): Promise<void> {
  if (dc.name === DEFAULT_DC) throw new ApiError(417, 'The default datacenter cannot be deleted');
  await ctx.db.transaction().execute(async (trx) => {
    if ((await repo.countVmsInDc(trx, dc.id)) > 0) throw new ApiError(417, 'Datacenter has VMs; delete or move them first');
    const main = await repo.findDc(trx, DEFAULT_DC);
    // Users whose current DC goes away fall back to the default DC (spec 3.4's starting point).
    await trx.updateTable('account').set({ current_dc_id: main?.id ?? null }).where('current_dc_id', '=', dc.id).execute();
    await trx.deleteFrom('dc_admin').where('dc_id', '=', dc.id).execute();
    await trx.deleteFrom('dc').where('id', '=', dc.id).execute();
    await logSync(trx, ctx, caller, dc.id, 'Delete datacenter', '', dcLog(dc));
  });
}

// ---- DC settings (spec 9) ----

type SettingsValues = Record<keyof DcSnapshotSettings, boolean | number | null>;

/** The settings object: exactly the VMS_VM_SNAPSHOT_* keys, in their declared order. */
export function settingsObject(dc: DcRow): SettingsValues {
  const current = dcSettings(dc);
  const out = {} as SettingsValues;
  for (const key of SETTING_KEYS) out[key] = current[key];
  return out;
}

const SETTING_KEYS = Object.keys(DEFAULT_DC_SETTINGS) as Array<keyof DcSnapshotSettings>;

/** ENABLED is a boolean; every limit is a positive integer, or null for "no limit". */
export async function updateSettings(ctx: AppContext, caller: Caller, dc: DcRow, data: Record<string, unknown>): Promise<SettingsValues> {
  const errors: FieldErrors = {};
  const next = settingsObject(dc);
  const changed: Array<readonly [string, unknown]> = [];
  for (const key of SETTING_KEYS) {
    if (!Object.prototype.hasOwnProperty.call(data, key) || data[key] === undefined) continue;
    let value: boolean | number | null;
    if (key === 'VMS_VM_SNAPSHOT_ENABLED') value = parseBool(data[key]);
    else if (data[key] === null) value = null;
    else {
      const r = validateFields(data, { [key]: { kind: 'int', min: 1 } });
      if (!r.ok) {
        Object.assign(errors, r.errors);
        continue;
      }
      value = r.value[key] as number;
    }
    next[key] = value;
    changed.push([key, value]);
  }
  fail(errors);
  const row = await ctx.db.transaction().execute(async (trx) => {
    const updated = await trx
      .updateTable('dc')
      .set({ settings: JSON.stringify(next) })
      .where('id', '=', dc.id)
      .returningAll()
      .executeTakeFirst();
    if (!updated) throw apiError('dcNotFound'); // deleted since the lookup
    await logSync(trx, ctx, caller, dc.id, 'Update datacenter settings', logDetail(changed), dcLog(updated));
    return updated;
  });
  return settingsObject(row);
}
