/** The task endpoints' reads: DC admin rights, the pending list, and the task log with its filters. */
import type { Kysely } from 'kysely';
import type { Database, TaskLogRow, UserRow } from '../db/schema.js';

/** Admin in a DC (Danube's `is_admin(dc)`): super admin, the DC's owner, or one of its admins; false when the DC does not exist. */
export async function isDcAdmin(db: Kysely<Database>, user: Pick<UserRow, 'id' | 'is_super_admin'>, dcId: number): Promise<boolean> {
  const dc = await db.selectFrom('dc').select(['id', 'owner_id']).where('id', '=', dcId).executeTakeFirst();
  if (!dc) return false;
  if (user.is_super_admin === 1 || dc.owner_id === user.id) return true;
  const row = await db.selectFrom('dc_admin').select('user_id').where('dc_id', '=', dc.id).where('user_id', '=', user.id).executeTakeFirst();
  return row !== undefined;
}

/** Ids of a DC's tasks still pending or running, oldest first; `ownerId` limits them to that owner's. */
export async function pendingTaskIds(db: Kysely<Database>, dcId: number, ownerId: number | null): Promise<string[]> {
  let q = db.selectFrom('task').select('id').where('dc_id', '=', dcId).where('state', 'in', ['PENDING', 'STARTED']).orderBy('created');
  if (ownerId !== null) q = q.where('owner_id', '=', ownerId);
  return (await q.execute()).map((r) => r.id);
}

/** The task log's filters, already validated. */
export interface TaskLogFilter {
  readonly dcId: number;
  /** Only entries this user owns or made (a non-admin); null: all of the DC. */
  readonly userId: number | null;
  readonly status?: string;
  readonly objectType?: string;
  readonly objectName?: string;
  /** Only tasks still pending or running, by their PENDING row. */
  readonly runningOnly: boolean;
  /** Leave out automatic tasks (task type `a`). */
  readonly hideAuto: boolean;
  /** ISO times, inclusive. */
  readonly from?: string;
  readonly to?: string;
  readonly ascending: boolean;
}

function taskLogQuery(db: Kysely<Database>, f: TaskLogFilter) {
  let q = db.selectFrom('task_log').selectAll().where('dc_id', '=', f.dcId);
  const uid = f.userId;
  if (uid !== null) q = q.where((eb) => eb.or([eb('owner_id', '=', uid), eb('user_id', '=', uid)]));
  if (f.status !== undefined) q = q.where('status', '=', f.status);
  if (f.objectType !== undefined) q = q.where('object_type', '=', f.objectType);
  if (f.objectName !== undefined) q = q.where('object_name', '=', f.objectName);
  if (f.runningOnly) {
    q = q.where('status', '=', 'PENDING').where('task_id', 'in', (eb) => eb.selectFrom('task').select('task.id').where('state', 'in', ['PENDING', 'STARTED']));
  }
  if (f.hideAuto) q = q.where('task_type', '!=', 'a');
  if (f.from !== undefined) q = q.where('time', '>=', f.from);
  if (f.to !== undefined) q = q.where('time', '<=', f.to);
  return q;
}

/** Entries of the task log in time order (ties by id), `limit` of them from `offset`. */
export async function readTaskLog(db: Kysely<Database>, f: TaskLogFilter, limit: number, offset = 0): Promise<TaskLogRow[]> {
  const dir = f.ascending ? 'asc' : 'desc';
  return taskLogQuery(db, f).orderBy('time', dir).orderBy('id', dir).limit(limit).offset(offset).execute();
}

export async function countTaskLog(db: Kysely<Database>, f: TaskLogFilter): Promise<number> {
  const row = await taskLogQuery(db, f)
    .clearSelect()
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
