/**
 * Login and logout (spec 3.2 with esnap's login throttle).
 *
 * Invariants kept here:
 * - tokens are stored as SHA-256 hashes, never as themselves;
 * - `_system` never logs in (it fails like a wrong password).
 */
import type { AppContext } from '../app-context.js';
import { SYSTEM_USER_ID } from '../domain/system.js';
import type { UserRow } from '../db/schema.js';
import { ApiError } from '../domain/errors.js';
import { formatDanubeTime } from '../domain/time.js';
import { validateFields, type FieldErrors } from '../domain/validate.js';
import { hashKey, hashPassword, newSecret, verifyPassword } from './secrets.js';
import { checkAndRecordLoginFailure, throttleKeys } from './login-throttle.js';
import * as repo from './account.repository.js';

export const TOKEN_LIFETIME_S = 3600;

// Messages esnap adds (no registry code, see the report of the accounts work).
export const LOGIN_FAILED = 'Unable to log in with provided credentials.';
export const LOGIN_DISABLED = 'User account is disabled.';
export const LOGIN_NO_API = 'User account is not allowed to access API';

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
    const wait = await checkAndRecordLoginFailure(ctx.db, throttleKeys(username, address), now);
    if (wait > 0) throw throttled(wait);
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
