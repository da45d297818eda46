/**
 * The live path of the qcow2 driver: when the VM's QEMU answers on its QMP socket and has this
 * image attached, snapshots are taken and removed by QEMU itself (`blockdev-snapshot-internal-sync`,
 * `blockdev-snapshot-delete-internal-sync`), because the image is open and locked by it: qemu-img
 * must not touch it.
 *
 * The disk's node is found through `query-block` by the image's real path (QEMU reports the
 * filename as it was given, possibly relative or through a symlink). The device name (the drive id
 * with `-drive`) is used when there is one, else the node name (`-blockdev` set-ups): both are
 * accepted by the snapshot commands; a qdev id (`vda`) is not.
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { QmpClient, QmpConnectionError } from '../../guest/qmp.js';
import { parseSnapshot, type QcowSnapshot } from './qcow2.image.js';
import { qmpError } from './qcow2.errors.js';

/** A QEMU monitor: the VM's QMP socket, or libvirt's monitor of a domain (src/hypervisor/libvirt.monitor.ts). */
export interface QemuMonitor {
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts?: { timeoutMs?: number }): Promise<T>;
  close(): Promise<void>;
}

/**
 * A live snapshot of a libvirt domain's image in one round trip, where the domain's device for the
 * image is already known (src/hypervisor/libvirt.monitor.ts snapshotOnKnownNode).
 */
export type LibvirtQuickSnapshot = (uuid: string, image: string, id: string, timeoutMs: number) => Promise<'done' | 'offline' | 'unknown'>;

export interface LiveDisk {
  readonly qmp: QemuMonitor;
  /** What the snapshot commands take as `device`. */
  readonly device: string;
  /** The image's snapshots as QEMU sees them now. */
  readonly snapshots: readonly QcowSnapshot[];
}

interface BlockInfo {
  device?: string;
  inserted?: {
    'node-name'?: string;
    file?: string;
    image?: { filename?: string; snapshots?: unknown[] };
  };
}

/**
 * Connects to the VM's monitor and finds the image there. Null when nobody listens on the socket
 * (the VM is stopped; a stale socket file counts as stopped) or when that QEMU does not have the
 * image attached: the offline path then runs, and qemu-img's lock still guards the image.
 * The caller closes `qmp`.
 */
export async function openLive(socket: string, imagePath: string, timeoutMs: number): Promise<LiveDisk | null> {
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(socket, { timeoutMs });
  } catch (err) {
    if (err instanceof QmpConnectionError && err.failure === 'unavailable') return null;
    throw qmpError(err, `cannot reach the VM's QMP socket ${socket}`);
  }
  return locateImage(qmp, imagePath, timeoutMs, socket);
}

/** Finds the image among the monitor's block devices; null (monitor closed) when it is not attached. */
export async function locateImage(qmp: QemuMonitor, imagePath: string, timeoutMs: number, where: string): Promise<LiveDisk | null> {
  try {
    const blocks = await qmp.execute<BlockInfo[]>('query-block', undefined, { timeoutMs });
    const want = realOrResolved(imagePath);
    for (const b of blocks) {
      const ins = b.inserted;
      if (!ins) continue;
      const names = [ins.file, ins.image?.filename].filter((f): f is string => typeof f === 'string' && !f.startsWith('json:'));
      const paths = names.map(realOrResolved);
      if (!paths.includes(want)) continue;
      const device = b.device || ins['node-name'];
      if (!device) continue;
      const snapshots = (ins.image?.snapshots ?? []).map(parseSnapshot).filter((s): s is QcowSnapshot => s !== null);
      return { qmp, device, snapshots };
    }
    await qmp.close();
    return null;
  } catch (err) {
    await qmp.close();
    throw qmpError(err, `cannot query the block devices on ${where}`);
  }
}

/** Synchronous realpath(3): a few of them cost less than their thread-pool round trips. */
function realOrResolved(path: string): string {
  try {
    return realpathSync.native(path);
  } catch {
    return resolve(path);
  }
}
