/**
 * Danube task ids (spec 7.1): `<user><tt><owner><tg><dc>-<8 hex>-<4 hex>-<4 hex>-<4 hex>`, the
 * suffix being the first 23 characters of a UUID v4. Clients parse the prefix (the `es` client
 * and the task permission checks do), so the format is part of the contract.
 */
import { createHash } from 'node:crypto';

export type TaskType = 'e' | 'a' | 'm' | 'i' | 'd' | 'f';

export interface TaskIdParts {
  /** Creator (7 = `_system` for scheduled and automatic work). */
  userId: number;
  type: TaskType;
  /** Owner of the affected object; the requesting user when there is none. */
  ownerId: number;
  dcBound: boolean;
  dcId: number;
}

const TASK_ID_RE = /^(\d+)([emiadf])(\d+)([du])(\d+)-([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$/;
const SUFFIX_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$/;

function prefix(p: Omit<TaskIdParts, 'type'>, type: TaskType): string {
  for (const n of [p.userId, p.ownerId, p.dcId]) {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`Invalid task id number: ${n}`);
  }
  return `${p.userId}${type}${p.ownerId}${p.dcBound ? 'd' : 'u'}${p.dcId}`;
}

function suffix(uuid: string): string {
  const s = uuid.slice(0, 23).toLowerCase();
  if (!SUFFIX_RE.test(s)) throw new RangeError(`Not a UUID: ${uuid}`);
  return s;
}

/** Last 8 hex digits of md5 of the user id string: Danube's mark of a dummy id (user 1 → 6f75849b). */
function dummyMark(userId: string): string {
  return createHash('md5').update(userId).digest('hex').slice(-8);
}

/**
 * @example makeTaskId({ userId: 1, type: 'e', ownerId: 5, dcBound: true, dcId: 1 }, randomUUID())
 * // '1e5d1-6c2e0f4a-1b2c-4d3e-8f9a'
 */
export function makeTaskId(p: TaskIdParts, uuid: string): string {
  return `${prefix(p, p.type)}-${suffix(uuid)}`;
}

/**
 * The id of a synchronous response (type `d`), which never names a real task.
 *
 * @example makeDummyTaskId({ userId: 1, ownerId: 1, dcBound: true, dcId: 1 }, randomUUID())
 * // '1d1d1-6f75849b-1b2c-4d3e-8f9a'
 */
export function makeDummyTaskId(p: Omit<TaskIdParts, 'type'>, uuid: string): string {
  return `${prefix(p, 'd')}-${dummyMark(String(p.userId))}${suffix(uuid).slice(8)}`;
}

/** The parts of a well-formed id, or null (old ids without the tg/dc part, e.g. `1e1-…`, fail). */
export function parseTaskId(id: string): TaskIdParts | null {
  const m = TASK_ID_RE.exec(id);
  if (m === null) return null;
  const userId = Number(m[1]);
  const ownerId = Number(m[3]);
  const dcId = Number(m[5]);
  if (!Number.isSafeInteger(userId) || !Number.isSafeInteger(ownerId) || !Number.isSafeInteger(dcId)) return null;
  return { userId, type: m[2] as TaskType, ownerId, dcBound: m[4] === 'd', dcId };
}

/** Whether a well-formed id carries the dummy mark of its creator, as Danube's `is_dummy_task`. */
export function isDummyTaskId(id: string): boolean {
  const m = TASK_ID_RE.exec(id);
  // Danube hashes the user id as written in the id.
  return m !== null && m[6] === dummyMark(m[1] as string);
}

const LOOSE_PREFIX_RE = /^(\d+)([a-zA-Z]+)(\d+)([a-zA-Z]+)(\d+)$/;

/**
 * The parts of an id as Danube's permission checks see it (`is_valid_task_id`): five groups with
 * suffix lengths 8, 4, 4, 4 of any characters, and a valid prefix. `1e1d1-ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ`
 * passes here (and is then an unknown task, 404), not in parseTaskId.
 */
export function parseTaskIdLoose(id: string): TaskIdParts | null {
  const parts = id.split('-');
  if (parts.length !== 5 || parts.slice(1).map((p) => p.length).join() !== '8,4,4,4') return null;
  const m = LOOSE_PREFIX_RE.exec(parts[0]!);
  if (m === null || !'emiadf'.includes(m[2]!) || m[2]!.length !== 1 || (m[4] !== 'd' && m[4] !== 'u')) return null;
  const [userId, ownerId, dcId] = [Number(m[1]), Number(m[3]), Number(m[5])];
  if (!Number.isSafeInteger(userId) || !Number.isSafeInteger(ownerId) || !Number.isSafeInteger(dcId)) return null;
  return { userId, type: m[2] as TaskType, ownerId, dcBound: m[4] === 'd', dcId };
}

/**
 * Danube's integer task type of the task log, `'%d%02d' % (tg, tt)` with tt the index in
 * (dummy, exec, auto, mgmt, internal, error) and tg 1 outside a DC: 1 exec, 0 dummy, 2 automatic;
 * 101, 100, 102 for DC-unbound tasks. Null for an id that is not well formed.
 */
export function taskLogType(id: string): number | null {
  const p = parseTaskIdLoose(id);
  if (!p) return null;
  return (p.dcBound ? 0 : 100) + 'deamif'.indexOf(p.type);
}
