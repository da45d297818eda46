/**
 * Who asks, and in which DC. Credentials: `ES-API-KEY: <key>` or `Authorization: Token <t>`
 * (spec 3.2). DC: the user's current DC, overridden by the `/api/dc/<dc>/` prefix and then by the
 * `dc` parameter (spec 3.4); DC-unbound views run in the default DC.
 */
import type { FastifyRequest } from 'fastify';
import type { AppContext } from '../app-context.js';
import { DEFAULT_DC } from '../domain/system.js';
import type { DcRow, UserRow } from '../db/schema.js';
import { apiError } from '../domain/errors.js';
import { hashKey } from '../accounts/secrets.js';
import { isDcAdmin, type Caller } from '../accounts/caller.js';

/** Resolves the credentials of a request to an active user with API access, or throws 403. */
export async function authenticate(ctx: AppContext, request: FastifyRequest): Promise<UserRow> {
  const apiKey = request.headers['es-api-key'];
  const authz = request.headers['authorization'];
  let user: UserRow | undefined;
  if (typeof apiKey === 'string' && apiKey !== '') {
    user = await ctx.db.selectFrom('account').selectAll().where('api_key_hash', '=', hashKey(apiKey)).executeTakeFirst();
    if (!user) throw apiError('invalidApiKey');
  } else if (typeof authz === 'string' && authz !== '') {
    const parts = authz.trim().split(/\s+/);
    if (parts[0]?.toLowerCase() !== 'token') throw apiError('authMissing');
    if (parts.length === 1) throw apiError('invalidTokenHeader');
    if (parts.length > 2) throw apiError('invalidTokenSpaces');
    const token = await ctx.db
      .selectFrom('auth_token')
      .selectAll()
      .where('key_hash', '=', hashKey(parts[1]!))
      .executeTakeFirst();
    // An expired token is as good as none (spec 3.2).
    if (token && token.expires <= ctx.clock.now().toISOString()) throw apiError('authMissing');
    if (!token) throw apiError('invalidToken');
    user = await ctx.db.selectFrom('account').selectAll().where('id', '=', token.user_id).executeTakeFirst();
    if (!user) throw apiError('userInactive');
  } else {
    throw apiError('authMissing');
  }
  if (!user.is_active) throw apiError('userInactive');
  if (!user.api_access) throw apiError('noApiAccess');
  return user;
}

async function canAccessDc(ctx: AppContext, user: UserRow, dc: DcRow): Promise<boolean> {
  if (user.is_super_admin || dc.access === 1 || dc.id === user.current_dc_id || dc.owner_id === user.id) return true;
  return isDcAdmin(ctx, user, dc);
}

export async function resolveDc(
  ctx: AppContext,
  user: UserRow,
  dcName: string | undefined,
  dcBound: boolean,
): Promise<Caller> {
  let dc: DcRow | undefined;
  if (dcBound && dcName !== undefined) {
    dc = await ctx.db.selectFrom('dc').selectAll().where('name', '=', dcName).executeTakeFirst();
    if (!dc || !(await canAccessDc(ctx, user, dc))) throw apiError('dcNotFound');
  } else if (dcBound && user.current_dc_id !== null) {
    dc = await ctx.db.selectFrom('dc').selectAll().where('id', '=', user.current_dc_id).executeTakeFirst();
  }
  dc ??= await ctx.db.selectFrom('dc').selectAll().where('name', '=', DEFAULT_DC).executeTakeFirstOrThrow();
  const isAdmin = await isDcAdmin(ctx, user, dc);
  return { user, dc, isAdmin, isSuperAdmin: user.is_super_admin === 1 };
}
