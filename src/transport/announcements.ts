/**
 * Restores a server announced to this node. The forced command's `receive` writes a disk only
 * while a restore task that names exactly that task, storage and disk is announced here and not
 * expired: a backup node's key alone cannot overwrite disks. The agent records an announcement
 * when the server sends it (before the restore task is queued on the backup node) and removes it
 * when the server says the task ended; `until` bounds a record whose end message never came.
 *
 * Backups with fsfreeze of a VM on this node are announced the same way, with the guest agent's
 * socket (`freezeSocket`, no `sizeBytes`): the forced command's `snapshot … freeze <task id>`
 * freezes that guest around the snapshot, and the socket comes from here, never from the
 * request. A freeze announcement allows no receive (it has no size).
 *
 * One file per task, `<announced dir>/<task id>.json`, written through a temporary name.
 */
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import { DISK_PATH_RE } from '../storage/driver.js';

export interface Announcement {
  readonly taskId: string;
  readonly storage: string;
  readonly disk: string;
  /** A restore: the disk's size in bytes (a receive commits exactly this many). */
  readonly sizeBytes?: number;
  /** A backup with fsfreeze: the guest agent socket of the disk's VM on this node. */
  readonly freezeSocket?: string;
  /** ISO time after which the announcement no longer allows a receive. */
  readonly until: string;
}

/** esnap's task ids (src/domain/taskid.ts): digits, a type letter, a UUID tail. */
export const TASK_ID_RE = /^\d+[emiadf]\d+[du]\d+-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$/;

function file(dir: string, taskId: string): string {
  if (!TASK_ID_RE.test(taskId)) throw new Error(`Invalid task id: ${JSON.stringify(taskId)}`);
  return join(dir, `${taskId}.json`);
}

export async function announce(dir: string, a: Announcement): Promise<void> {
  if (!DISK_PATH_RE.test(a.disk)) throw new Error(`Invalid disk path: ${JSON.stringify(a.disk)}`);
  if (a.freezeSocket !== undefined && !validSocket(a.freezeSocket)) throw new Error(`Invalid guest agent socket: ${JSON.stringify(a.freezeSocket)}`);
  const path = file(dir, a.taskId);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(a), { mode: 0o600 });
  await rename(tmp, path);
}

export async function withdrawAnnouncement(dir: string, taskId: string): Promise<void> {
  await unlink(file(dir, taskId)).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
}

/**
 * The disk size of an announced receive of `disk` on `storage` for `taskId`, or null when no such
 * restore is announced (or it expired at `now`).
 */
export async function announcedReceive(dir: string, taskId: string, storage: string, disk: string, now: Date): Promise<number | null> {
  const text = await readFile(file(dir, taskId), 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    const a = JSON.parse(text) as Partial<Announcement>;
    const ok = a.taskId === taskId && a.storage === storage && a.disk === disk && typeof a.until === 'string' && Date.parse(a.until) > now.getTime();
    return ok && typeof a.sizeBytes === 'number' && Number.isSafeInteger(a.sizeBytes) ? a.sizeBytes : null;
  } catch {
    return null;
  }
}

/** An absolute, normalized path without control characters (what qga_socket holds). */
function validSocket(path: unknown): path is string {
  return typeof path === 'string' && path.length <= 4096 && isAbsolute(path) && normalize(path) === path && !/[\u0000-\u001f\u007f]/.test(path);
}

/**
 * The guest agent socket of an announced backup of `disk` on `storage` with fsfreeze for
 * `taskId`, or null when none is announced (or it expired at `now`).
 */
export async function announcedFreeze(dir: string, taskId: string, storage: string, disk: string, now: Date): Promise<string | null> {
  const text = await readFile(file(dir, taskId), 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    const a = JSON.parse(text) as Partial<Announcement>;
    const ok = a.taskId === taskId && a.storage === storage && a.disk === disk && typeof a.until === 'string' && Date.parse(a.until) > now.getTime();
    return ok && validSocket(a.freezeSocket) ? a.freezeSocket : null;
  } catch {
    return null;
  }
}
