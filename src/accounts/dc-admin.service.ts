/**
 * DC admins (spec 3.4): granting and revoking a user's admin rights on one DC, each grant or
 * revocation logged in the same transaction.
 */
import type { AppContext } from '../app-context.js';
import type { DcRow, UserRow } from '../db/schema.js';
import type { Caller } from './caller.js';
import { ApiError, apiError } from '../domain/errors.js';
import { logDetail } from '../tasks/task-log.js';
import { logSync } from './account.write.js';
import { dcLog } from './dc.service.js';
import * as repo from './account.repository.js';

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
