/**
 * Queries of users, tokens, DCs and DC admins. Rows become API objects here (`userObject`,
 * `dcObject`), the one place that decides what leaves the server: never a hash or a secret.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database, DcRow, UserRow } from '../db/schema.js';
import { SYSTEM_USER_ID } from '../domain/system.js';

export type Db = Kysely<Database> | Transaction<Database>;

export interface UserObject {
  username: string;
  email: string;
  is_super_admin: boolean;
  api_access: boolean;
  is_active: boolean;
  current_dc: string | null;
}

export interface DcObject {
  name: string;
  alias: string;
  access: number;
  owner: string | null;
}

// ---- users ----

/**
 * A user by name. `_system` is never returned: it is internal (scheduled work), may not log in and
 * cannot be read, changed or deleted through the API, so it looks absent.
 */
export async function findUser(db: Db, username: string): Promise<UserRow | undefined> {
  return db
    .selectFrom('account')
    .selectAll()
    .where('username', '=', username)
    .where('id', '!=', SYSTEM_USER_ID)
    .executeTakeFirst();
}

export async function listUsers(db: Db): Promise<UserRow[]> {
  return db.selectFrom('account').selectAll().where('id', '!=', SYSTEM_USER_ID).orderBy('username').execute();
}

export async function userObjects(db: Db, users: readonly UserRow[]): Promise<UserObject[]> {
  const dcs = await db.selectFrom('dc').select(['id', 'name']).execute();
  const dcName = new Map(dcs.map((d) => [d.id, d.name]));
  return users.map((u) => ({
    username: u.username,
    email: u.email,
    is_super_admin: u.is_super_admin === 1,
    api_access: u.api_access === 1,
    is_active: u.is_active === 1,
    current_dc: u.current_dc_id === null ? null : (dcName.get(u.current_dc_id) ?? null),
  }));
}

/** Another user holding this API key hash (keys are unique: they identify their user). */
export async function apiKeyTaken(db: Db, keyHash: string, exceptUserId: number | null): Promise<boolean> {
  let q = db.selectFrom('account').select('id').where('api_key_hash', '=', keyHash);
  if (exceptUserId !== null) q = q.where('id', '!=', exceptUserId);
  return (await q.executeTakeFirst()) !== undefined;
}

/** Active super admins that can use the API, other than `exceptUserId` (lock-out guard). */
export async function otherUsableSuperAdmins(db: Db, exceptUserId: number): Promise<number> {
  const row = await db
    .selectFrom('account')
    .select((eb) => eb.fn.countAll<string | number>().as('n'))
    .where('is_super_admin', '=', 1)
    .where('is_active', '=', 1)
    .where('api_access', '=', 1)
    .where('id', '!=', exceptUserId)
    .where('id', '!=', SYSTEM_USER_ID)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function countVmsOwnedBy(db: Db, userId: number): Promise<number> {
  const row = await db
    .selectFrom('vm')
    .select((eb) => eb.fn.countAll<string | number>().as('n'))
    .where('owner_id', '=', userId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function dcsOwnedBy(db: Db, userId: number): Promise<string[]> {
  const rows = await db.selectFrom('dc').select('name').where('owner_id', '=', userId).orderBy('name').execute();
  return rows.map((r) => r.name);
}

// ---- tokens ----

/** Replaces the user's token (one per user) and drops every expired token on the way. */
export async function replaceToken(db: Db, userId: number, keyHash: string, created: string, expires: string): Promise<void> {
  await db.deleteFrom('auth_token').where((eb) => eb.or([eb('user_id', '=', userId), eb('expires', '<=', created)])).execute();
  await db.insertInto('auth_token').values({ key_hash: keyHash, user_id: userId, created, expires }).execute();
}

export async function deleteTokens(db: Db, userId: number): Promise<void> {
  await db.deleteFrom('auth_token').where('user_id', '=', userId).execute();
}

// ---- DCs ----

export async function findDc(db: Db, name: string): Promise<DcRow | undefined> {
  return db.selectFrom('dc').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function findDcById(db: Db, id: number): Promise<DcRow | undefined> {
  return db.selectFrom('dc').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * DCs the user can access, by name (spec 3.4): all for super admins; otherwise public ones, the
 * current DC, owned ones and those where the user is a DC admin. Must agree with `http/auth.ts`.
 */
export async function accessibleDcs(db: Db, user: UserRow): Promise<DcRow[]> {
  let q = db.selectFrom('dc').selectAll();
  if (user.is_super_admin !== 1) {
    q = q.where((eb) =>
      eb.or([
        eb('access', '=', 1),
        eb('id', '=', user.current_dc_id ?? -1),
        eb('owner_id', '=', user.id),
        eb('id', 'in', eb.selectFrom('dc_admin').select('dc_id').where('user_id', '=', user.id)),
      ]),
    );
  }
  return q.orderBy('name').execute();
}

export async function dcObjects(db: Db, dcs: readonly DcRow[]): Promise<DcObject[]> {
  const ownerIds = [...new Set(dcs.map((d) => d.owner_id).filter((id): id is number => id !== null))];
  const owners =
    ownerIds.length === 0 ? [] : await db.selectFrom('account').select(['id', 'username']).where('id', 'in', ownerIds).execute();
  const ownerName = new Map(owners.map((o) => [o.id, o.username]));
  return dcs.map((d) => ({
    name: d.name,
    alias: d.alias,
    access: d.access,
    owner: d.owner_id === null ? null : (ownerName.get(d.owner_id) ?? null),
  }));
}

export async function countVmsInDc(db: Db, dcId: number): Promise<number> {
  const row = await db
    .selectFrom('vm')
    .select((eb) => eb.fn.countAll<string | number>().as('n'))
    .where('dc_id', '=', dcId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

// ---- DC admins ----

export async function dcAdminUsernames(db: Db, dcId: number): Promise<string[]> {
  const rows = await db
    .selectFrom('dc_admin')
    .innerJoin('account', 'account.id', 'dc_admin.user_id')
    .select('account.username')
    .where('dc_admin.dc_id', '=', dcId)
    .orderBy('account.username')
    .execute();
  return rows.map((r) => r.username);
}

export async function isDcAdminGranted(db: Db, dcId: number, userId: number): Promise<boolean> {
  const row = await db
    .selectFrom('dc_admin')
    .select('user_id')
    .where('dc_id', '=', dcId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return row !== undefined;
}
