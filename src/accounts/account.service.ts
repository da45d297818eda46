/**
 * Rules of accounts: login and logout (spec 3.2 with esnap's login throttle), users and DCs with
 * their settings and admins (spec 3.4, 9). Field validation happens here, with the database checks,
 * so one request gets all its field errors at once; writes run in one transaction with their
 * task-log entry.
 *
 * Invariants kept here:
 * - secrets are write-only: passwords are stored as scrypt hashes, API keys and tokens as SHA-256;
 * - `_system` never logs in and is invisible to the API (the repository hides it);
 * - the last usable super admin cannot be deleted, demoted, deactivated or cut off the API;
 * - a user owning VMs or DCs and a DC holding VMs cannot be deleted (no orphans); `main` neither.
 */
import { randomUUID } from 'node:crypto';
import type { AppContext } from '../app-context.js';
import { DEFAULT_DC, SYSTEM_USER_ID } from '../app-context.js';
import type { DcRow, UserRow } from '../db/schema.js';
import type { Caller } from '../http/auth.js';
import { isDcAdmin } from '../http/auth.js';
import { ApiError, FailureError, apiError } from '../domain/errors.js';
import { msg } from '../domain/messages.js';
import { makeDummyTaskId } from '../domain/taskid.js';
import { formatDanubeTime } from '../domain/time.js';
import { NAME_RE, parseBool, validateFields, type FieldErrors, type FieldValues, type Rule } from '../domain/validate.js';
import { writeLog, logDetail, type LogObject } from '../tasks/task-log.js';
import { DEFAULT_DC_SETTINGS, dcSettings, type DcSnapshotSettings } from './dc.settings.js';
import { hashKey, hashPassword, newSecret, verifyPassword } from './secrets.js';
import { loginRetryAfter, recordLoginFailure, throttleKeys } from './login-throttle.js';
import * as repo from './account.repository.js';
import type { Db, DcObject, UserObject } from './account.repository.js';

export const TOKEN_LIFETIME_S = 3600;
export const USERNAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]*$/;
export const PASSWORD_MIN = 6;
export const API_KEY_MIN = 16;
const API_KEY_RE = /^[\x21-\x7e]+$/; // visible ASCII: it travels in an HTTP header, unquoted
const EMAIL_RE = /^[^@\s]+@[^@\s]+$/;

// Messages esnap adds (no registry code, see the report of the accounts work).
export const LOGIN_FAILED = 'Unable to log in with provided credentials.';
export const LOGIN_DISABLED = 'User account is disabled.';
export const LOGIN_NO_API = 'User account is not allowed to access API';
const notExist = (field: string, value: string): string => `Object with ${field}=${value} does not exist.`;
const lastSuperAdmin = (): ApiError => new ApiError(417, 'Cannot remove the last super admin');

/** A hash of a random secret that nobody knows, verified against when there is nothing to verify. */
const DUMMY_HASH = hashPassword(newSecret());

function throttled(seconds: number): ApiError {
  const unit = seconds === 1 ? 'second' : 'seconds';
  return new ApiError(429, `Request was throttled. Expected available in ${seconds} ${unit}.`, { 'Retry-After': String(seconds) });
}

export type LoginOutcome =
  | { readonly ok: true; readonly body: { token: string; expires: string; detail: string } }
  | { readonly ok: false; readonly detail: string | FieldErrors };

/**
 * Checks the credentials first, so a right password logs in even while its user or address is
 * throttled; only a wrong one is throttled (429) or recorded as a failure.
 */
export async function login(ctx: AppContext, data: Record<string, unknown>, address: string): Promise<LoginOutcome> {
  const v = validateFields(data, {
    username: { kind: 'string', required: true, max: 254 },
    password: { kind: 'string', required: true },
  });
  if (!v.ok) return { ok: false, detail: v.errors };
  const username = v.value.username!;
  const user = await repo.findUser(ctx.db, username);
  const password = v.value.password!;
  // Users without a password (and unknown names) still cost one hash: timing tells nothing.
  const valid = user?.password_hash ? await verifyPassword(password, user.password_hash) : (await verifyPassword(password, await DUMMY_HASH)) && false;
  const now = ctx.clock.now();
  if (!user || !valid || user.id === SYSTEM_USER_ID) {
    const keys = throttleKeys(username, address);
    const wait = await loginRetryAfter(ctx.db, keys, now);
    if (wait > 0) throw throttled(wait);
    await recordLoginFailure(ctx.db, keys, now);
    return { ok: false, detail: LOGIN_FAILED };
  }
  if (user.is_active !== 1) return { ok: false, detail: LOGIN_DISABLED };
  if (user.api_access !== 1) return { ok: false, detail: LOGIN_NO_API };
  const token = newSecret();
  const expires = new Date(now.getTime() + TOKEN_LIFETIME_S * 1000);
  // Stored as toISOString() because http/auth.ts compares it as text with the clock's ISO time.
  await ctx.db.transaction().execute((trx) => repo.replaceToken(trx, user.id, hashKey(token), now.toISOString(), expires.toISOString()));
  return { ok: true, body: { token, expires: formatDanubeTime(expires), detail: 'Welcome to Danube Cloud API.' } };
}

export async function logout(ctx: AppContext, user: UserRow): Promise<void> {
  await repo.deleteTokens(ctx.db, user.id);
}

// ---- helpers ----

async function logSync(db: Db, ctx: AppContext, caller: Caller, dcId: number, m: string, detail: string, object: LogObject): Promise<void> {
  const taskId = makeDummyTaskId({ userId: caller.user.id, ownerId: caller.user.id, dcBound: false, dcId }, randomUUID());
  await writeLog(db, {
    time: ctx.clock.now().toISOString(),
    taskId,
    taskType: 'd',
    status: 'SUCCESS',
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: caller.user.id,
    dcId,
    msg: m,
    detail,
    object,
  });
}

/**
 * validateFields per field, so that the fields that passed still get their database checks and one
 * answer lists every error (validateFields drops all values when one field fails).
 */
function validateEach<T extends Record<string, Rule>>(data: Record<string, unknown>, rules: T, errors: FieldErrors): FieldValues<T> {
  const out: FieldValues<T> = {};
  for (const key of Object.keys(rules)) {
    const r = validateFields(data, { [key]: rules[key]! }, { partial: true });
    if (r.ok) Object.assign(out, r.value);
    else Object.assign(errors, r.errors);
  }
  return out;
}

function fail(errors: FieldErrors): void {
  if (Object.keys(errors).length > 0) throw new FailureError(errors);
}

/** A secret field: absent, `null` (clear it) or a string checked against its rules. */
function secretField(data: Record<string, unknown>, key: string, min: number, errors: FieldErrors, pattern?: RegExp): string | null | undefined {
  if (!Object.prototype.hasOwnProperty.call(data, key) || data[key] === undefined) return undefined;
  if (data[key] === null) return null;
  const r = validateFields(data, { [key]: { kind: 'string', required: true, min, max: 4096, ...(pattern ? { pattern } : {}) } });
  if (!r.ok) {
    Object.assign(errors, r.errors);
    return undefined;
  }
  return r.value[key] as string;
}

export async function canAccessDc(ctx: AppContext, user: UserRow, dc: DcRow): Promise<boolean> {
  return dc.access === 1 || dc.id === user.current_dc_id || isDcAdmin(ctx, user, dc);
}

// ---- users ----

const USER_RULES = {
  email: { kind: 'string', max: 254, nullAsEmpty: true },
  is_super_admin: { kind: 'bool' },
  api_access: { kind: 'bool' },
  is_active: { kind: 'bool' },
  current_dc: { kind: 'string', required: true, max: 64 },
} satisfies Record<string, Rule>;
const ADMIN_ONLY_FIELDS = ['is_super_admin', 'api_access', 'is_active'] as const;

export async function userObject(ctx: AppContext, user: UserRow): Promise<UserObject> {
  return (await repo.userObjects(ctx.db, [user]))[0]!;
}

export async function listUsers(ctx: AppContext, full: boolean): Promise<string[] | UserObject[]> {
  const users = await repo.listUsers(ctx.db);
  return full ? repo.userObjects(ctx.db, users) : users.map((u) => u.username);
}

/** The user named in the URL, for super admins or the user themself; 403 for anyone else. */
export async function userForCaller(ctx: AppContext, caller: Caller, username: string): Promise<UserRow> {
  if (!caller.isSuperAdmin && caller.user.username !== username) throw apiError('permissionDenied');
  const user = await repo.findUser(ctx.db, username);
  if (!user) throw apiError('userNotFound');
  return user;
}

interface UserChanges {
  email?: string;
  is_super_admin?: number;
  api_access?: number;
  is_active?: number;
  current_dc_id?: number;
  password_hash?: string | null;
  api_key_hash?: string | null;
}

/** Validates the writable user fields of `data` (all optional) into column changes. */
async function userChanges(ctx: AppContext, caller: Caller, target: UserRow | null, data: Record<string, unknown>, errors: FieldErrors): Promise<UserChanges> {
  const values = validateEach(data, USER_RULES, errors);
  const out: UserChanges = {};
  if (values.email !== undefined) {
    if (values.email !== '' && !EMAIL_RE.test(values.email)) errors['email'] = ['Enter a valid email address.'];
    else out.email = values.email;
  }
  for (const f of ADMIN_ONLY_FIELDS) if (values[f] !== undefined) out[f] = values[f] ? 1 : 0;
  if (values.current_dc !== undefined) {
    const dc = await repo.findDc(ctx.db, values.current_dc);
    // Non-admins may only move between DCs they can already reach: the current DC grants access.
    const allowed = dc !== undefined && (caller.isSuperAdmin || (target !== null && (await canAccessDc(ctx, target, dc))));
    if (!allowed) errors['current_dc'] = [notExist('name', values.current_dc)];
    else out.current_dc_id = dc.id;
  }
  const password = secretField(data, 'password', PASSWORD_MIN, errors);
  const apiKey = secretField(data, 'api_key', API_KEY_MIN, errors, API_KEY_RE);
  if (password !== undefined) out.password_hash = password === null ? null : await hashPassword(password);
  if (apiKey !== undefined) {
    const h = apiKey === null ? null : hashKey(apiKey);
    if (h !== null && (await repo.apiKeyTaken(ctx.db, h, target?.id ?? null))) errors['api_key'] = ['This API key is already in use.'];
    else out.api_key_hash = h;
  }
  return out;
}

function changeDetail(data: Record<string, unknown>, changes: UserChanges, currentDc: string | undefined): string {
  const pairs: Array<readonly [string, unknown]> = [];
  if (changes.email !== undefined) pairs.push(['email', changes.email]);
  for (const f of ADMIN_ONLY_FIELDS) if (changes[f] !== undefined) pairs.push([f, changes[f] === 1]);
  if (changes.current_dc_id !== undefined) pairs.push(['current_dc', currentDc ?? data['current_dc']]);
  // Secrets are logged only as having been set.
  if (changes.password_hash !== undefined) pairs.push(['password', '***']);
  if (changes.api_key_hash !== undefined) pairs.push(['api_key', '***']);
  return logDetail(pairs);
}

function isUsableSuperAdmin(u: { is_super_admin: number; is_active: number; api_access: number }): boolean {
  return u.is_super_admin === 1 && u.is_active === 1 && u.api_access === 1;
}

export async function createUser(ctx: AppContext, caller: Caller, username: string, data: Record<string, unknown>): Promise<UserObject> {
  if (await repo.findUser(ctx.db, username)) throw apiError('userExists');
  const errors: FieldErrors = {};
  const nameErrors: string[] = [];
  if ([...username].length > 254) nameErrors.push(msg.maxLength(254, [...username].length));
  if (!USERNAME_RE.test(username)) nameErrors.push(msg.invalid);
  if (nameErrors.length > 0) errors['username'] = nameErrors;
  const changes = await userChanges(ctx, caller, null, data, errors);
  fail(errors);
  const main = await repo.findDc(ctx.db, DEFAULT_DC);
  try {
    const user = await ctx.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('account')
        .values({
          username,
          email: changes.email ?? '',
          password_hash: changes.password_hash ?? null,
          api_key_hash: changes.api_key_hash ?? null,
          is_super_admin: changes.is_super_admin ?? 0,
          api_access: changes.api_access ?? 1,
          is_active: changes.is_active ?? 1,
          current_dc_id: changes.current_dc_id ?? main?.id ?? null,
          created: ctx.clock.now().toISOString(),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await logSync(trx, ctx, caller, caller.dc.id, 'Create user', changeDetail(data, changes, undefined), userLog(row));
      return row;
    });
    return await userObject(ctx, user);
  } catch (err) {
    // Two concurrent creates of one name: the unique index decides; the loser gets the 406.
    if (await repo.findUser(ctx.db, username)) throw apiError('userExists');
    throw err;
  }
}

function userLog(u: UserRow): LogObject {
  return { type: 'user', name: u.username, alias: u.username, pk: String(u.id) };
}

export async function updateUser(ctx: AppContext, caller: Caller, target: UserRow, data: Record<string, unknown>): Promise<UserObject> {
  const errors: FieldErrors = {};
  const changes = await userChanges(ctx, caller, target, data, errors);
  fail(errors);
  if (!caller.isSuperAdmin && ADMIN_ONLY_FIELDS.some((f) => changes[f] !== undefined && changes[f] !== target[f])) {
    throw apiError('permissionDenied');
  }
  const updated = await ctx.db.transaction().execute(async (trx) => {
    const after = { ...target, ...changes };
    if (isUsableSuperAdmin(target) && !isUsableSuperAdmin(after) && (await repo.otherUsableSuperAdmins(trx, target.id)) === 0) {
      throw lastSuperAdmin();
    }
    const row = Object.keys(changes).length === 0
      ? target
      : await trx.updateTable('account').set(changes).where('id', '=', target.id).returningAll().executeTakeFirstOrThrow();
    // A new password ends the sessions opened with the old one.
    if (changes.password_hash !== undefined) await repo.deleteTokens(trx, target.id);
    const dcName = changes.current_dc_id === undefined ? undefined : (await repo.findDcById(trx, changes.current_dc_id))?.name;
    await logSync(trx, ctx, caller, caller.dc.id, 'Update user', changeDetail(data, changes, dcName), userLog(row));
    return row;
  });
  return userObject(ctx, updated);
}

export async function deleteUser(ctx: AppContext, caller: Caller, target: UserRow): Promise<void> {
  await ctx.db.transaction().execute(async (trx) => {
    if (isUsableSuperAdmin(target) && (await repo.otherUsableSuperAdmins(trx, target.id)) === 0) throw lastSuperAdmin();
    if ((await repo.countVmsOwnedBy(trx, target.id)) > 0) throw new ApiError(417, 'User owns VMs; delete them or change their owner first');
    if ((await repo.dcsOwnedBy(trx, target.id)).length > 0) {
      throw new ApiError(417, 'User owns datacenters; change their owner first');
    }
    await repo.deleteTokens(trx, target.id);
    await trx.deleteFrom('dc_admin').where('user_id', '=', target.id).execute();
    await trx.deleteFrom('account').where('id', '=', target.id).execute();
    await logSync(trx, ctx, caller, caller.dc.id, 'Delete user', '', userLog(target));
  });
}

// ---- DCs ----

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

function dcLog(dc: DcRow): LogObject {
  return { type: 'dc', name: dc.name, alias: dc.alias, pk: String(dc.id) };
}

export async function createDc(ctx: AppContext, caller: Caller, name: string, data: Record<string, unknown>): Promise<DcObject> {
  if (await repo.findDc(ctx.db, name)) throw apiError('dcExists');
  const errors: FieldErrors = {};
  const nameErrors: string[] = [];
  if ([...name].length > 16) nameErrors.push(msg.maxLength(16, [...name].length));
  if (!NAME_RE.test(name)) nameErrors.push(msg.invalid);
  if (nameErrors.length > 0) errors['name'] = nameErrors;
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
      : await trx.updateTable('dc').set(changes).where('id', '=', dc.id).returningAll().executeTakeFirstOrThrow();
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
      .executeTakeFirstOrThrow();
    await logSync(trx, ctx, caller, dc.id, 'Update datacenter settings', logDetail(changed), dcLog(updated));
    return updated;
  });
  return settingsObject(row);
}

// ---- DC admins ----

export interface DcAdminObject {
  username: string;
  dc: string;
}

export async function dcAdminUsernames(ctx: AppContext, dc: DcRow): Promise<string[]> {
  return repo.dcAdminUsernames(ctx.db, dc.id);
}

async function grantTarget(ctx: AppContext, username: string): Promise<UserRow> {
  const user = await repo.findUser(ctx.db, username);
  if (!user) throw apiError('userNotFound');
  return user;
}

export async function getDcAdmin(ctx: AppContext, dc: DcRow, username: string): Promise<DcAdminObject> {
  const user = await grantTarget(ctx, username);
  if (!(await repo.isDcAdminGranted(ctx.db, dc.id, user.id))) throw new ApiError(404, 'User is not a datacenter admin');
  return { username: user.username, dc: dc.name };
}

export async function addDcAdmin(ctx: AppContext, caller: Caller, dc: DcRow, username: string): Promise<DcAdminObject> {
  const user = await grantTarget(ctx, username);
  await ctx.db.transaction().execute(async (trx) => {
    if (await repo.isDcAdminGranted(trx, dc.id, user.id)) throw new ApiError(406, 'User is already a datacenter admin');
    await trx.insertInto('dc_admin').values({ dc_id: dc.id, user_id: user.id }).execute();
    await logSync(trx, ctx, caller, dc.id, 'Add datacenter admin', logDetail([['username', user.username]]), dcLog(dc));
  });
  return { username: user.username, dc: dc.name };
}

export async function removeDcAdmin(ctx: AppContext, caller: Caller, dc: DcRow, username: string): Promise<void> {
  const user = await grantTarget(ctx, username);
  await ctx.db.transaction().execute(async (trx) => {
    const gone = await trx.deleteFrom('dc_admin').where('dc_id', '=', dc.id).where('user_id', '=', user.id).executeTakeFirst();
    if (Number(gone.numDeletedRows) === 0) throw new ApiError(404, 'User is not a datacenter admin');
    await logSync(trx, ctx, caller, dc.id, 'Remove datacenter admin', logDetail([['username', user.username]]), dcLog(dc));
  });
}
