/**
 * The task log (spec 7.2): one entry per task, written PENDING at submission and updated in place
 * with the final status; synchronous operations write a finished entry at once.
 */
import type { Insertable, Kysely, Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import { insertRows } from '../db/bulk.js';

export interface LogObject {
  readonly type: string; // vm, nodestorage, user, dc
  readonly name: string;
  readonly alias: string;
  readonly pk: string;
}

export interface LogEntry {
  readonly time: string;
  readonly taskId: string;
  readonly taskType: string;
  readonly status: 'PENDING' | 'SUCCESS' | 'FAILURE' | 'REVOKED';
  readonly userId: number;
  readonly username: string;
  readonly ownerId: number;
  readonly dcId: number;
  readonly msg: string;
  readonly detail: string;
  readonly object: LogObject;
}

/** Danube's flag from the message's first word: 1 create, 2 delete, 3 update, 4 remote, 0 other. */
export function logFlag(msg: string): number {
  const first = msg.split(' ', 1)[0] ?? '';
  if (['Update', 'Rollback', 'Restore', 'Revert'].includes(first)) return 3;
  if (['Add', 'Create', 'Recreate', 'Import'].includes(first)) return 1;
  if (['Remove', 'Delete', 'Invalid'].includes(first)) return 2;
  if (first === 'Remote') return 4;
  return 0;
}

export async function writeLog(db: Kysely<Database> | Transaction<Database>, e: LogEntry): Promise<void> {
  await db.insertInto('task_log').values(logRow(e)).execute();
}

/** Many entries, a few hundred per statement (a scheduler tick logs thousands of tasks at once). */
export async function writeLogs(db: Kysely<Database> | Transaction<Database>, entries: readonly LogEntry[]): Promise<void> {
  await insertRows(db, 'task_log', entries.map(logRow));
}

function logRow(e: LogEntry): Insertable<Database['task_log']> {
  return {
    time: e.time,
    task_id: e.taskId,
    task_type: e.taskType,
    status: e.status,
    user_id: e.userId,
    username: e.username,
    owner_id: e.ownerId,
    dc_id: e.dcId,
    msg: e.msg,
    detail: e.detail,
    object_type: e.object.type,
    object_name: e.object.name,
    object_alias: e.object.alias,
    object_pk: e.object.pk,
    flag: logFlag(e.msg),
  };
}

/** Quote a value the way Danube's task-log details do: strings in single quotes, booleans lower case. */
export function logValue(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v === null || v === undefined) return 'None';
  return String(v);
}

export function logDetail(pairs: ReadonlyArray<readonly [string, unknown]>, sep = ', '): string {
  return pairs.map(([k, v]) => `${k}=${logValue(v)}`).join(sep);
}
