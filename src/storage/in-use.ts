/**
 * "Is the VM really stopped?": before a rollback or restore changes a disk, the agent makes sure no
 * QEMU uses it, whatever status the database recorded. Two independent signs, either one refuses:
 *
 * 1. The VM's QMP socket answers. Any QEMU that answers counts, whatever `query-status` says:
 *    `running`, but also `paused`, `prelaunch` or `shutdown` (with -no-shutdown): in every one of
 *    these states the process holds the image open with its own cached metadata, and rewriting the
 *    image under it corrupts it. A socket that accepts but stays silent (another client holds the
 *    monitor, or QEMU hangs) counts as in use too. Nobody listening (no file, a stale socket of a
 *    killed QEMU) is the only "stopped".
 * 2. QEMU's image lock is held (OFD locks QEMU takes on every image it opens, even without QMP).
 *    qcow2: `qemu-img info` WITHOUT -U must read-lock the image and fails with `Failed to get shared
 *    "write" lock` while a VM has it open for writing. raw: qemu-img info does not lock a raw image
 *    at all (it reads no data), and a read-only open shares the image with writers, so the probe is
 *    a read-write open that does nothing (`qemu-io -f raw -c quit`), which fails with `Failed to get
 *    "write" lock`. Neither probe writes a byte.
 *
 * Safe when no VM exists: no socket, a free image, or no image at all pass silently (a missing
 * image is the caller's `disk_missing` to report).
 *
 * Example:
 *   await assertDiskNotInUse({ imagePath: '/srv/vms/web01/disk0.qcow2', format: 'qcow2', qmpSocket: vm.qmp_socket, runner });
 */
import { resolve } from 'node:path';
import { QmpClient, QmpConnectionError } from '../guest/qmp.js';
import { StorageError } from './driver.js';
import { qemuToolError, qmpError } from './qcow2/qcow2.errors.js';
import { argv as qemuArgv } from './qcow2/qcow2.image.js';
import type { CommandRunner } from './runner.js';

export const NOT_STOPPED = 'VM is not stopped';
// Short: QEMU greets at once, and a silent socket must not hold the node's agent slot for long.
const DEFAULT_QMP_TIMEOUT_MS = 3_000;
const PROBE_TIMEOUT_MS = 60_000;

export interface DiskInUseQuery {
  /** Absolute path of the image. */
  readonly imagePath: string;
  readonly format: 'raw' | 'qcow2';
  readonly qmpSocket?: string | null;
  readonly runner: CommandRunner;
  /** How long a QMP socket may take to greet and answer; default 5 s. */
  readonly qmpTimeoutMs?: number;
}

/** Throws StorageError('busy', 'VM is not stopped') when a QEMU uses the disk; the reason is its `cause`. */
export async function assertDiskNotInUse(p: DiskInUseQuery): Promise<void> {
  if (p.qmpSocket) {
    const status = await qemuStatus(p.qmpSocket, p.qmpTimeoutMs ?? DEFAULT_QMP_TIMEOUT_MS);
    if (status !== null) throw notStopped(`QEMU on ${p.qmpSocket} answers, status ${status}`);
  }
  // Absolute: a relative `nbd:x` or `json:{…}` would be read by QEMU as a protocol, not a file.
  const image = resolve(p.imagePath);
  const probe = p.format === 'qcow2' ? qemuArgv.lockProbeQcow2(image) : qemuArgv.lockProbeRaw(image);
  const result = await p.runner
    .run(probe, { timeoutMs: PROBE_TIMEOUT_MS, env: { LC_ALL: 'C' } })
    .catch((err: unknown) => {
      throw new StorageError('backend', `cannot check whether ${image} is in use: ${(err as Error).message}`, { cause: err });
    });
  if (result.code === 0) return;
  const err = qemuToolError(result, `checking whether ${image} is in use`);
  if (err.code === 'busy') throw notStopped(err.message);
  if (err.code === 'disk_missing') return;
  throw err;
}

/** `query-status` of the QEMU on `socket`, or null when nobody listens there. */
async function qemuStatus(socket: string, timeoutMs: number): Promise<string | null> {
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(socket, { timeoutMs });
  } catch (err) {
    if (err instanceof QmpConnectionError && err.failure === 'unavailable') return null;
    const e = qmpError(err, `QMP socket ${socket}`);
    if (e.code === 'busy') throw notStopped(e.message);
    throw e;
  }
  try {
    const st = await qmp.execute<{ status?: unknown }>('query-status', undefined, { timeoutMs });
    return typeof st.status === 'string' ? st.status : 'unknown';
  } catch (err) {
    // It answered the greeting, so a QEMU is there even if this command failed.
    throw notStopped(`QEMU on ${socket} answers but query-status failed: ${(err as Error).message}`);
  } finally {
    await qmp.close();
  }
}

function notStopped(reason: string): StorageError {
  return new StorageError('busy', NOT_STOPPED, { cause: new Error(reason) });
}
