/**
 * The one place where `zfs` stderr becomes a typed error. Every pattern below was seen on this
 * machine's zfs-fuse 0.7.0 (recorded in test/fixtures/zfs/) or is the OpenZFS 2.x wording of the
 * same failure; anything else is `backend` with the text kept in the message.
 *
 * Besides the contract's `code`, an error carries a finer `reason` the driver itself acts on:
 * `busy` is retried, `unsupported` tells capability detection that a feature is missing,
 * `exists` on a dataset lets createDisk treat a concurrent create as done.
 *
 * Example:
 *   const r = await runner.run(argv);
 *   if (r.code !== 0) throw zfsError(argv, r);   // StorageError('snapshot_exists', …) etc.
 */
import { StorageError, type StorageErrorCode } from '../driver.js';

export type ZfsReason =
  | 'missing'
  | 'parent_missing'
  | 'exists'
  | 'busy'
  | 'no_space'
  | 'invalid_name'
  | 'has_children'
  | 'already_mounted'
  | 'not_mounted'
  | 'unsupported'
  | 'no_daemon'
  | 'other';

export class ZfsError extends StorageError {
  constructor(
    code: StorageErrorCode,
    message: string,
    /** What zfs said, finer than `code`; the driver decides retries and fallbacks on it. */
    readonly reason: ZfsReason,
    /** The dataset or snapshot zfs named in its complaint, when it named one. */
    readonly target: string | null,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** What failed, as the runner reported it. For a pipe, pass both stderr texts joined. */
export interface ZfsFailure {
  readonly code: number;
  readonly stderr: string;
}

/** `cannot <verb> '<name>': <problem>`: the form of nearly every zfs error line. */
const QUOTED = /cannot [a-z ]+'([^']*)': (.*)/;

/**
 * Rules in order; the first that matches wins. Space and busy come first: zfs prefixes them with
 * the same "cannot open/create '<name>'" as everything else.
 */
const RULES: ReadonlyArray<{ re: RegExp; reason: ZfsReason; code: (target: string | null) => StorageErrorCode }> = [
  { re: /out of space|No space left on device|quota exceeded/, reason: 'no_space', code: () => 'no_space' },
  { re: /dataset is busy|pool or dataset is busy|Device or resource busy|target is busy/, reason: 'busy', code: () => 'busy' },
  { re: /Please make sure that the zfs-fuse daemon is running|failed to initialize ZFS library/, reason: 'no_daemon', code: () => 'backend' },
  // Features an older zfs lacks (zfs-fuse: list -p, written, destroy -n, several snapshots per call, zvols).
  {
    re: /invalid option '.'|invalid property '|too many arguments|Function not implemented|unrecognized command/,
    reason: 'unsupported',
    code: () => 'backend',
  },
  // `ds@a,b` is the comma list an older zfs reads as one (invalid) name; no real name holds a comma.
  { re: /cannot [a-z ]+'[^']*,[^']*': invalid dataset name/, reason: 'unsupported', code: () => 'backend' },
  { re: /invalid dataset name|invalid character|name is too long|component name too long/, reason: 'invalid_name', code: () => 'invalid_name' },
  { re: /parent does not exist/, reason: 'parent_missing', code: () => 'disk_missing' },
  { re: /dataset does not exist/, reason: 'missing', code: (t) => (t?.includes('@') ? 'snapshot_missing' : 'disk_missing') },
  // zfs send of a snapshot that is not there (the recv side then only says "failed to read from stream").
  { re: /could not send \S+: does not exist/, reason: 'missing', code: () => 'snapshot_missing' },
  // OpenZFS, destroy of a comma list none of whose snapshots exists.
  { re: /could not find any snapshots to destroy/, reason: 'missing', code: () => 'snapshot_missing' },
  { re: /dataset already exists/, reason: 'exists', code: (t) => (t?.includes('@') ? 'snapshot_exists' : 'backend') },
  { re: /destination '[^']*' exists/, reason: 'exists', code: () => 'backend' },
  { re: /has children/, reason: 'has_children', code: () => 'backend' },
  { re: /already mounted/, reason: 'already_mounted', code: () => 'backend' },
  { re: /not currently mounted/, reason: 'not_mounted', code: () => 'backend' },
];

/** Turns a failed zfs command into a ZfsError (a StorageError), keeping argv and stderr as the cause. */
export function zfsError(argv: readonly string[], failure: ZfsFailure): ZfsError {
  const text = failure.stderr;
  const first = firstLine(text);
  const target = QUOTED.exec(text)?.[1] ?? /could not send (\S+):/.exec(text)?.[1] ?? null;
  const rule = RULES.find((r) => r.re.test(text));
  const message = `zfs ${argv[1] ?? ''} failed (exit ${failure.code}): ${first || 'no error text'}`;
  const cause = { argv: [...argv], exitCode: failure.code, stderr: text };
  if (!rule) return new ZfsError('backend', message, 'other', target, { cause });
  return new ZfsError(rule.code(target), message, rule.reason, target, { cause });
}

function firstLine(text: string): string {
  // "connect: …" precedes the useful line when the daemon is down; prefer the line that explains.
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && l !== 'usage:');
  return lines.find((l) => /^cannot |^Please make sure/.test(l)) ?? lines[0] ?? '';
}

/** Whether zfs said the dataset (or a parent of it) is not there. */
export function isMissing(err: unknown): boolean {
  return err instanceof ZfsError && (err.reason === 'missing' || err.reason === 'parent_missing');
}

/** A StorageError for anything thrown around zfs commands (file system calls on the mountpoint included). */
export function asStorageError(err: unknown, what: string): StorageError {
  if (err instanceof StorageError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new StorageError('no_space', `${what}: no space left`, { cause: err });
  return new StorageError('backend', `${what}: ${(err as Error | undefined)?.message ?? String(err)}`, { cause: err });
}
