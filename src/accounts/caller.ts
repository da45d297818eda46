/**
 * Who asks, once authenticated: the user, the DC the request runs in and the user's rights there.
 * The HTTP layer (src/http/auth.ts) builds a Caller per request; services take it as a plain value.
 */
import type { AppContext } from '../app-context.js';
import type { DcRow, UserRow } from '../db/schema.js';
import { apiError } from '../domain/errors.js';

export interface Caller {
  readonly user: UserRow;
  readonly dc: DcRow;
  /** Staff, DC owner or DC admin in `dc` (Danube's `is_admin`). */
  readonly isAdmin: boolean;
  readonly isSuperAdmin: boolean;
}

export async function isDcAdmin(ctx: AppContext, user: UserRow, dc: DcRow): Promise<boolean> {
  if (user.is_super_admin || dc.owner_id === user.id) return true;
  const row = await ctx.db
    .selectFrom('dc_admin')
    .select('user_id')
    .where('dc_id', '=', dc.id)
    .where('user_id', '=', user.id)
    .executeTakeFirst();
  return row !== undefined;
}

export function requireAdmin(caller: Caller): void {
  if (!caller.isAdmin) throw apiError('permissionDenied');
}

export function requireSuperAdmin(caller: Caller): void {
  if (!caller.isSuperAdmin) throw apiError('permissionDenied');
}
