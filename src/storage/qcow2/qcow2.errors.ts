/**
 * The one place where QEMU's error texts (qemu-img, qemu-io and qemu-storage-daemon stderr, QMP
 * `error.desc`) become typed StorageErrors. Every pattern below was seen on QEMU 7.2 and is pinned
 * by a recorded fixture in test/fixtures/qcow2/ (see qcow2.errors.test in the driver tests).
 *
 * QEMU does not translate its messages; the strerror parts are glibc's, which is why the driver
 * runs the tools with LC_ALL=C.
 */
import { StorageError, type StorageErrorCode } from '../driver.js';
import { QmpCommandError, QmpConnectionError } from '../../guest/qmp.js';

export interface ToolFailure {
  readonly code: number;
  readonly stderr: string;
}

/**
 * QEMU's image locking (OFD locks on the file): `Failed to get "write" lock` when we want to write,
 * `Failed to get shared "write" lock` when we read and must not share the image with a writer.
 * Either way another process, a running VM in practice, has the image open.
 */
const LOCKED = /Failed to get (?:shared )?"[a-z -]+" lock/;

const RULES: ReadonlyArray<readonly [RegExp, StorageErrorCode]> = [
  [LOCKED, 'busy'],
  // Snapshot lookups, checked before the generic "No such file" of a missing image:
  // `snapshot -a` of an unknown tag reports ENOENT from the snapshot lookup.
  [/Could not apply snapshot '[^']*': Failed to load snapshot: No such file or directory/, 'snapshot_missing'],
  [/Could not delete snapshot '[^']*': snapshot not found/, 'snapshot_missing'],
  [/Failed to load snapshot: Can't find snapshot/, 'snapshot_missing'],
  [/Snapshot with id '[^']*' and name '[^']*' does not exist/, 'snapshot_missing'],
  [/Snapshot with name '[^']*' already exists/, 'snapshot_exists'],
  [/No space left on device|Disk quota exceeded/, 'no_space'],
  [/(?:Could not open|can't open device) '?[^\n]*: No such file or directory/, 'disk_missing'],
];

function classify(text: string): StorageErrorCode {
  for (const [re, code] of RULES) if (re.test(text)) return code;
  return 'backend';
}

/** A failed qemu-img / qemu-io / qemu-storage-daemon run, as a StorageError. `what` names the operation. */
export function qemuToolError(r: ToolFailure, what: string): StorageError {
  const text = r.stderr.trim();
  const code = classify(text);
  const detail = text.split('\n')[0] || `exit code ${r.code}`;
  if (code === 'busy') {
    return new StorageError('busy', `${what}: the image is in use by another process (a running VM without a usable QMP socket?): ${detail}`);
  }
  return new StorageError(code, `${what}: ${detail}`);
}

/** An error from a QMP exchange, as a StorageError; StorageErrors pass through unchanged. */
export function qmpError(err: unknown, what: string): StorageError {
  if (err instanceof StorageError) return err;
  if (err instanceof QmpCommandError) return new StorageError(classify(err.desc), `${what}: ${err.desc}`, { cause: err });
  if (err instanceof QmpConnectionError && err.failure === 'timeout') {
    // A monitor that accepts but does not answer belongs to a live QEMU (another client holds it,
    // or QEMU hangs): not safe to treat as stopped, not ours to force.
    return new StorageError('busy', `${what}: ${err.message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new StorageError('backend', `${what}: ${message}`, { cause: err });
}
