/**
 * Rows of the VM registry become API objects here, and only here. Key order is part of the wire
 * contract (clients and tests compare it), so each object is built field by field.
 */
import type { NodeStorageRow, TaskRow, VmDiskRow, VmRow } from '../db/schema.js';
import { formatDanubeTime } from '../domain/time.js';
import { VM_STATUS_NAMES } from './vm.lookup.js';
import type { VmRefs } from './vm.repository.js';
import type { LogObject } from '../tasks/task-log.js';

export const MB = 1024 * 1024;

/** How a VM appears in the task log (`object_type` vm, `object_pk` its uuid). */
export function vmLogObject(vm: Pick<VmRow, 'hostname' | 'alias' | 'uuid'>): LogObject {
  return { type: 'vm', name: vm.hostname, alias: vm.alias, pk: vm.uuid };
}

/**
 * A VM (`GET /vm?full=true`, `GET|POST|PUT /vm/<vm>/define`). Key order, Danube-like (identity,
 * placement, state, then esnap's settings):
 *
 *   hostname, uuid, alias, node, owner, status, brand, qmp_socket, qga_socket,
 *   snapshot_limit_manual, snapshot_limit_auto, snapshot_size_limit, snapshot_size_percent_limit,
 *   disks
 *
 * `node` is the node's hostname, `owner` the username, `status` Danube's status name
 * (`stopped`, `running`, `notready`…), `disks` the number of disks (their objects are at
 * `/vm/<vm>/define/disk`). Unset sockets and limits are null.
 */
export interface VmObject {
  hostname: string;
  uuid: string;
  alias: string;
  node: string | null;
  owner: string | null;
  status: string;
  brand: string;
  qmp_socket: string | null;
  qga_socket: string | null;
  snapshot_limit_manual: number | null;
  snapshot_limit_auto: number | null;
  snapshot_size_limit: number | null;
  snapshot_size_percent_limit: number | null;
  disks: number;
}

export function statusName(status: number): string {
  return VM_STATUS_NAMES[status] ?? String(status);
}

export function vmObject(vm: VmRow, refs: VmRefs): VmObject {
  return {
    hostname: vm.hostname,
    uuid: vm.uuid,
    alias: vm.alias,
    node: refs.nodes.get(vm.node_id) ?? null,
    owner: refs.owners.get(vm.owner_id) ?? null,
    status: statusName(vm.status),
    brand: vm.brand,
    qmp_socket: vm.qmp_socket,
    qga_socket: vm.qga_socket,
    snapshot_limit_manual: vm.snapshot_limit_manual,
    snapshot_limit_auto: vm.snapshot_limit_auto,
    snapshot_size_limit: vm.snapshot_size_limit,
    snapshot_size_percent_limit: vm.snapshot_size_percent_limit,
    disks: refs.diskCounts.get(vm.uuid) ?? 0,
  };
}

/**
 * A disk: `{disk_id, zpool, path, size}`. `disk_id` is the 1-based position in the VM's disk
 * list (what every disk_id in the API means), `zpool` the storage name, `path` relative to the
 * storage, `size` in MB (MiB).
 */
export interface DiskObject {
  disk_id: number;
  zpool: string | null;
  path: string | null;
  size: number;
  /** libvirt disks only (src/hypervisor/): target device, detached from its domain, why on no storage. */
  target?: string;
  detached?: boolean;
  reason?: string | null;
}

/**
 * A libvirt disk on no esnap storage has no storage path: its source path is shown to the super
 * admin only (it tells the host's layout), null to everyone else.
 */
export function diskObject(disk: VmDiskRow, arrayId: number, storage: NodeStorageRow | undefined, superAdmin = false): DiskObject {
  const out: DiskObject = { disk_id: arrayId, zpool: storage?.name ?? null, path: disk.path, size: disk.size_mb };
  if (disk.libvirt_target === null) return out;
  if (disk.unmapped !== null) out.path = superAdmin ? disk.libvirt_source : null;
  return { ...out, target: disk.libvirt_target, detached: disk.detached === 1, reason: disk.unmapped };
}

/**
 * `GET /vm/<vm>/status` (Danube's shape): hostname, uuid, alias, status, status_change, tasks.
 * `tasks` maps the id of each task of the VM that has not ended to its apiview (spec 7.5).
 */
export interface VmStatusObject {
  hostname: string;
  uuid: string;
  alias: string;
  status: string;
  status_change: string | null;
  tasks: Record<string, unknown>;
}

export function statusObject(vm: VmRow, tasks: readonly TaskRow[]): VmStatusObject {
  const map: Record<string, unknown> = {};
  for (const t of tasks) map[t.id] = parseApiview(t.apiview);
  return {
    hostname: vm.hostname,
    uuid: vm.uuid,
    alias: vm.alias,
    status: statusName(vm.status),
    status_change: vm.status_change === null ? null : formatDanubeTime(new Date(vm.status_change)),
    tasks: map,
  };
}

function parseApiview(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Written by TaskService from an object, so this cannot happen; an unreadable view is shown empty.
    return {};
  }
}
