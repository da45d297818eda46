/**
 * The one place where `btrfs` stderr becomes a typed error. Every pattern below was seen on this
 * machine's btrfs-progs 6.2 with LC_ALL=C (recorded in test/fixtures/btrfs/); anything else is
 * `backend` with btrfs's own line kept in the message.
 *
 * btrfs names neither the operation nor the path in most of its complaints ("Could not statfs: No
 * such file or directory" is what both a missing disk and a missing snapshot look like), so the
 * caller says what "missing" and "exists" mean for the call it made; the finer `reason` is kept for
 * the driver to act on (a qgroup listing that says "quotas not enabled" is not a failure).
 *
 * Example:
 *   const r = await runner.run(argv, { env: { LC_ALL: 'C' } });
 *   if (r.code !== 0) throw btrfsError(argv, r, { missing: 'disk_missing', exists: 'snapshot_exists' });
 */
import { StorageError, type StorageErrorCode } from '../driver.js';

export type BtrfsReason =
  | 'no_space'
  | 'busy'
  | 'exists'
  | 'missing'
  | 'not_subvolume'
  | 'read_only'
  | 'cross_device'
  | 'not_btrfs'
  | 'has_nested'
  | 'permission'
  | 'quotas_off'
  /** qgroup numbers exist but btrfs says not to trust them (rescan running, inconsistent). */
  | 'qgroup_unreliable'
  | 'other';

export class BtrfsError extends StorageError {
  constructor(
    code: StorageErrorCode,
    message: string,
    /** What btrfs said, finer than `code`. */
    readonly reason: BtrfsReason,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** What a missing path or an existing target means for the call that failed. */
export interface BtrfsContext {
  /** For a missing path or a path that is no subvolume: `disk_missing` (snapshot of a disk), `snapshot_missing` (a rollback's source). Default `backend`. */
  readonly missing?: StorageErrorCode;
  /** For an existing target: `snapshot_exists` when creating a snapshot. Default `backend`. */
  readonly exists?: StorageErrorCode;
}

export interface BtrfsFailure {
  readonly code: number;
  readonly stderr: string;
}

/**
 * Rules in order; the first match wins. Space and busy come first because btrfs wraps them in the
 * same "cannot snapshot '<path>':" as everything else; "send may be in progress" comes before the
 * plain "Operation not permitted" it follows.
 */
const RULES: ReadonlyArray<{ re: RegExp; reason: BtrfsReason }> = [
  { re: /No space left on device|Disk quota exceeded/, reason: 'no_space' },
  {
    re: /send may be in progress|not deleting default subvolume|Device or resource busy|Text file busy|Resource temporarily unavailable/,
    reason: 'busy',
  },
  { re: /quotas not enabled/, reason: 'quotas_off' },
  { re: /qgroup data may be incorrect|qgroup data inconsistent|rescan recommended/, reason: 'qgroup_unreliable' },
  { re: /not a btrfs filesystem/i, reason: 'not_btrfs' },
  { re: /Invalid cross-device link/, reason: 'cross_device' },
  { re: /target path already exists|exists and it is not a directory|File exists/, reason: 'exists' },
  { re: /Not a Btrfs subvolume/, reason: 'not_subvolume' },
  { re: /No such file or directory/, reason: 'missing' },
  { re: /Read-only file system/, reason: 'read_only' },
  { re: /Directory not empty/, reason: 'has_nested' },
  { re: /Operation not permitted|Permission denied/, reason: 'permission' },
];

/** Classifies btrfs's stderr; also used on successful runs, whose warnings can matter (qgroups). */
export function btrfsReason(stderr: string): BtrfsReason {
  return RULES.find((r) => r.re.test(stderr))?.reason ?? 'other';
}

/** Turns a failed btrfs command into a BtrfsError (a StorageError), keeping argv and stderr as the cause. */
export function btrfsError(argv: readonly string[], failure: BtrfsFailure, ctx: BtrfsContext = {}): BtrfsError {
  const reason = btrfsReason(failure.stderr);
  const message = `btrfs ${verb(argv)} failed (exit ${failure.code}): ${firstLine(failure.stderr) || 'no error text'}`;
  const cause = { argv: [...argv], exitCode: failure.code, stderr: failure.stderr };
  return new BtrfsError(codeFor(reason, ctx), message, reason, { cause });
}

/** `subvolume snapshot` from `[…, 'btrfs', '--format', 'json', 'subvolume', 'snapshot', '-r', …]`. */
function verb(argv: readonly string[]): string {
  const words: string[] = [];
  for (let i = argv.indexOf('btrfs') + 1; i < argv.length && words.length < 2; i++) {
    const arg = argv[i]!;
    if (arg === '--format') i++; // its value is not a command word
    else if (!arg.startsWith('-')) words.push(arg);
  }
  return words.join(' ');
}

function codeFor(reason: BtrfsReason, ctx: BtrfsContext): StorageErrorCode {
  switch (reason) {
    case 'no_space':
      return 'no_space';
    case 'busy':
      return 'busy';
    case 'exists':
      return ctx.exists ?? 'backend';
    case 'missing':
    case 'not_subvolume':
      return ctx.missing ?? 'backend';
    default:
      return 'backend';
  }
}

/** The ERROR line explains; a WARNING before it ("cannot read default subvolume id") usually does not. */
function firstLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return lines.find((l) => l.startsWith('ERROR:')) ?? lines[0] ?? '';
}
