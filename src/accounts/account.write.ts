/**
 * What every account write shares: field validation that keeps going after a failed field, so one
 * request gets all its field errors at once (with the database checks), and the task-log entry each
 * write records in its own transaction.
 */
import { randomUUID } from 'node:crypto';
import type { AppContext } from '../app-context.js';
import type { Caller } from './caller.js';
import { FailureError } from '../domain/errors.js';
import { makeDummyTaskId } from '../domain/taskid.js';
import { msg } from '../domain/messages.js';
import { validateFields, type FieldErrors, type FieldValues, type Rule } from '../domain/validate.js';
import { writeLog, type LogObject } from '../tasks/task-log.js';
import type { Db } from './account.repository.js';

export const notExist = (field: string, value: string): string => `Object with ${field}=${value} does not exist.`;

export async function logSync(db: Db, ctx: AppContext, caller: Caller, dcId: number, m: string, detail: string, object: LogObject): Promise<void> {
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
export function validateEach<T extends Record<string, Rule>>(data: Record<string, unknown>, rules: T, errors: FieldErrors): FieldValues<T> {
  const out: FieldValues<T> = {};
  for (const key of Object.keys(rules)) {
    const r = validateFields(data, { [key]: rules[key]! }, { partial: true });
    if (r.ok) Object.assign(out, r.value);
    else Object.assign(errors, r.errors);
  }
  return out;
}

/**
 * The name a create takes from its URL (not a body field, so not a Rule): its length in characters
 * (code points), then its pattern; both errors are listed under `field`.
 */
export function checkName(value: string, field: string, max: number, pattern: RegExp, errors: FieldErrors): void {
  const found: string[] = [];
  const length = [...value].length;
  if (length > max) found.push(msg.maxLength(max, length));
  if (!pattern.test(value)) found.push(msg.invalid);
  if (found.length > 0) errors[field] = found;
}

export function fail(errors: FieldErrors): void {
  if (Object.keys(errors).length > 0) throw new FailureError(errors);
}
