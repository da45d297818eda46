/**
 * What the forced command accepts (`esnap ssh-serve`, run by sshd for a backup node's key with the
 * client's command in SSH_ORIGINAL_COMMAND), as a pure parser. Three requests, nothing else:
 *
 *   send dataset <storage> <disk> <snapshot> [<base>]   native stream: `zfs send [-i base]` or
 *                                                       `btrfs send [-p base]` of the snapshot
 *   send image <storage> <disk> <snapshot>              the snapshot's raw image bytes
 *   receive <task id> <storage> <disk>                  raw image bytes on stdin written into the
 *                                                       disk, only during that announced restore
 *   receive dataset <task id> <storage> <disk> <snap>   a native full stream (`zfs send` of backup
 *                                                       <snap>) on stdin replaces the disk's dataset,
 *                                                       only during that announced restore
 *   snapshot <storage> <disk> <is-n> [freeze <task id>] take the backup's source snapshot (is- ids only);
 *                                                       with freeze: the guest frozen around it, when
 *                                                       that backup task's freeze was announced here
 *   release <storage> <disk> <is-n>                     destroy a backup's source snapshot (is- ids only)
 *
 * Words are separated by single spaces; the whole command may hold only letters, digits and
 * `. _ - /` besides them, so no quoting, globbing, redirection or option of any tool can be
 * expressed. Storages are names of this node's storages, disks are paths relative to a storage
 * (DISK_PATH_RE: no `..`, no leading `/`, no dot-folders), snapshots are esnap's ids. Anything
 * else is refused with a message saying why, and exit code 2.
 */
import { DISK_PATH_RE } from '../storage/driver.js';
import { TASK_ID_RE } from './announcements.js';

export type ServeRequest =
  | { readonly op: 'send'; readonly format: 'dataset'; readonly storage: string; readonly disk: string; readonly snapshot: string; readonly base: string | null }
  | { readonly op: 'send'; readonly format: 'image'; readonly storage: string; readonly disk: string; readonly snapshot: string }
  | { readonly op: 'receive'; readonly taskId: string; readonly storage: string; readonly disk: string }
  | { readonly op: 'receive-dataset'; readonly taskId: string; readonly storage: string; readonly disk: string; readonly snapshot: string }
  | { readonly op: 'snapshot'; readonly storage: string; readonly disk: string; readonly snapshot: string; readonly freezeTask: string | null }
  | { readonly op: 'release'; readonly storage: string; readonly disk: string; readonly snapshot: string };

/** Refused: the command's exit code is EXIT_REFUSED and stderr says `esnap: refused: <message>`. */
export class ServeRefusal extends Error {
  override readonly name = 'ServeRefusal';
}

export const EXIT_FAILED = 1;
export const EXIT_REFUSED = 2;
/** `send dataset … <base>` whose base is no longer on the disk: the caller sends a full stream instead. */
export const EXIT_BASE_MISSING = 3;

/** What ends a receive's image when the sender commits: `commit <sha-256 hex>\n` (ssh-transfer.ts). */
export const COMMIT_PREFIX = 'commit ';

/** The last stderr line of a `send image` that ended well: `esnap: image <bytes> bytes sha256 <hex>`. */
export const IMAGE_TRAILER_RE = /^esnap: image ([0-9]{1,18}) bytes sha256 ([0-9a-f]{64})$/;

/**
 * A `snapshot … freeze` whose freeze did not hold (the snapshot was taken all the same) says why on
 * a stderr line `esnap: freeze: <Danube's message>` before it exits 0.
 */
export const FREEZE_NOTE_PREFIX = 'esnap: freeze: ';

/** esnap's snapshot ids: manual `es-`, automatic `as-`, and backup bases `is-` (hidden from users). */
export const SERVE_SNAPSHOT_RE = /^[aei]s-[0-9]{1,18}$/;
/** Backup bases only: the incremental `<base>` of a dataset send. */
export const BASE_SNAPSHOT_RE = /^is-[0-9]{1,18}$/;
const STORAGE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ALLOWED_RE = /^[A-Za-z0-9._/ -]*$/;
const MAX_LENGTH = 1024;

const USAGE =
  'allowed: "send dataset <storage> <disk> <snapshot> [<base>]", "send image <storage> <disk> <snapshot>", "receive <task id> <storage> <disk>", ' +
  '"receive dataset <task id> <storage> <disk> <snapshot>", ' +
  '"snapshot <storage> <disk> <is-n> [freeze <task id>]", "release <storage> <disk> <is-n>"';

/**
 * Parses SSH_ORIGINAL_COMMAND against this node's storage names (null: any well-formed name, for
 * the client's own check). `undefined` (no command: an interactive login) is refused like
 * everything else.
 */
export function parseServeRequest(command: string | undefined, storages: readonly string[] | null): ServeRequest {
  if (command === undefined || command.trim() === '') {
    throw new ServeRefusal(`this key runs esnap's send and receive only, not a shell (${USAGE})`);
  }
  if (command.length > MAX_LENGTH) throw new ServeRefusal('command too long');
  if (!ALLOWED_RE.test(command)) throw new ServeRefusal(`command has characters esnap never sends (only letters, digits, ". _ - /" and single spaces): ${JSON.stringify(command.slice(0, 200))}`);
  const words = command.split(' ');
  if (words.some((w) => w === '')) throw new ServeRefusal('words must be separated by single spaces');
  const storage = (name: string | undefined): string => {
    if (name === undefined || !STORAGE_RE.test(name) || (storages !== null && !storages.includes(name))) {
      throw new ServeRefusal(`no storage ${JSON.stringify(name ?? '')} on this node (storages: ${storages?.join(', ') || 'none'})`);
    }
    return name;
  };
  const disk = (path: string | undefined): string => {
    if (path === undefined || path.length > 255 || !DISK_PATH_RE.test(path)) {
      throw new ServeRefusal(`${JSON.stringify(path ?? '')} is not a disk path inside a storage (relative, no "..", no dot-folders)`);
    }
    return path;
  };
  const snapshot = (id: string | undefined, re: RegExp, what: string): string => {
    if (id === undefined || !re.test(id)) throw new ServeRefusal(`${JSON.stringify(id ?? '')} is not ${what}`);
    return id;
  };
  const [verb, ...rest] = words;
  if (verb === 'send') {
    const [format, s, d, snap, base, ...extra] = rest;
    if (format === 'dataset') {
      if (extra.length > 0) throw new ServeRefusal(`too many words (${USAGE})`);
      return {
        op: 'send',
        format,
        storage: storage(s),
        disk: disk(d),
        snapshot: snapshot(snap, SERVE_SNAPSHOT_RE, 'an esnap snapshot id'),
        base: base === undefined ? null : snapshot(base, BASE_SNAPSHOT_RE, 'a backup base snapshot id (is-<n>)'),
      };
    }
    if (format === 'image') {
      if (base !== undefined) throw new ServeRefusal(`too many words (${USAGE})`);
      return { op: 'send', format, storage: storage(s), disk: disk(d), snapshot: snapshot(snap, SERVE_SNAPSHOT_RE, 'an esnap snapshot id') };
    }
    throw new ServeRefusal(`send takes "dataset" or "image", not ${JSON.stringify(format ?? '')} (${USAGE})`);
  }
  if (verb === 'receive' && rest[0] === 'dataset') {
    const [, taskId, s, d, snap, ...extra] = rest;
    if (extra.length > 0) throw new ServeRefusal(`too many words (${USAGE})`);
    if (taskId === undefined || !TASK_ID_RE.test(taskId)) throw new ServeRefusal(`${JSON.stringify(taskId ?? '')} is not an esnap task id`);
    return { op: 'receive-dataset', taskId, storage: storage(s), disk: disk(d), snapshot: snapshot(snap, SERVE_SNAPSHOT_RE, 'an esnap snapshot id') };
  }
  if (verb === 'receive') {
    const [taskId, s, d, ...extra] = rest;
    if (extra.length > 0) throw new ServeRefusal(`too many words (${USAGE})`);
    if (taskId === undefined || !TASK_ID_RE.test(taskId)) throw new ServeRefusal(`${JSON.stringify(taskId ?? '')} is not an esnap task id`);
    return { op: 'receive', taskId, storage: storage(s), disk: disk(d) };
  }
  if (verb === 'snapshot' || verb === 'release') {
    const [s, d, snap, freeze, taskId, ...extra] = rest;
    const base = { storage: storage(s), disk: disk(d), snapshot: snapshot(snap, BASE_SNAPSHOT_RE, 'a backup snapshot id (is-<n>)') };
    if (verb === 'release' || freeze === undefined) {
      if (freeze !== undefined) throw new ServeRefusal(`too many words (${USAGE})`);
      return verb === 'release' ? { op: verb, ...base } : { op: verb, ...base, freezeTask: null };
    }
    if (freeze !== 'freeze' || extra.length > 0) throw new ServeRefusal(`snapshot takes "freeze <task id>" after the snapshot id, nothing else (${USAGE})`);
    if (taskId === undefined || !TASK_ID_RE.test(taskId)) throw new ServeRefusal(`${JSON.stringify(taskId ?? '')} is not an esnap task id`);
    return { op: verb, ...base, freezeTask: taskId };
  }
  throw new ServeRefusal(`${JSON.stringify(verb)} is not a command of this key (${USAGE})`);
}
