/**
 * Users (spec 3.4). Writes run in one transaction with their task-log entry.
 *
 * Invariants kept here:
 * - secrets are write-only: passwords are stored as scrypt hashes, API keys as SHA-256;
 * - `_system` is invisible to the API (the repository hides it);
 * - the last usable super admin cannot be deleted, demoted, deactivated or cut off the API;
 * - a user owning VMs or DCs cannot be deleted (no orphans).
 */
import type { AppContext } from '../app-context.js';
import { DEFAULT_DC } from '../domain/system.js';
import type { UserRow } from '../db/schema.js';
import type { Caller } from './caller.js';
import { ApiError, apiError } from '../domain/errors.js';
import { validateFields, type FieldErrors, type Rule } from '../domain/validate.js';
import { logDetail, type LogObject } from '../tasks/task-log.js';
import { hashKey, hashPassword } from './secrets.js';
import { checkName, fail, logSync, notExist, validateEach } from './account.write.js';
import { canAccessDc } from './dc.service.js';
import * as repo from './account.repository.js';
import type { UserObject } from './account.repository.js';

export const USERNAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]*$/;
export const PASSWORD_MIN = 6;
export const API_KEY_MIN = 16;
const API_KEY_RE = /^[\x21-\x7e]+$/; // visible ASCII: it travels in an HTTP header, unquoted
const EMAIL_RE = /^[^@\s]+@[^@\s]+$/;

const lastSuperAdmin = (): ApiError => new ApiError(417, 'Cannot remove the last super admin');

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
  checkName(username, 'username', 254, USERNAME_RE, errors);
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
      : await trx.updateTable('account').set(changes).where('id', '=', target.id).returningAll().executeTakeFirst();
    if (!row) throw apiError('userNotFound'); // deleted since the lookup
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
