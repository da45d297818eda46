/** The snapshot object of spec 5.1, keys in Danube's order, then esnap's `fsfreeze` and `pinned`. */
import type { VmDiskRow } from '../db/schema.js';
import { formatDanubeTime } from '../domain/time.js';
import { arrayDiskId } from '../vms/vm.lookup.js';
import type { SnapshotView } from './snapshot.repository.js';

export interface SnapshotObject {
  hostname: string;
  vm_uuid: string;
  define: string | null;
  name: string;
  disk_id: number;
  note: string;
  type: number;
  created: string;
  status: number;
  size: number | null;
  id: number;
  fsfreeze: boolean;
  pinned: boolean;
}

export function snapshotObject(row: SnapshotView, disks: readonly VmDiskRow[]): SnapshotObject {
  return {
    hostname: row.hostname,
    vm_uuid: row.vm_uuid,
    define: row.define_name,
    name: row.name,
    disk_id: arrayDiskId(disks, row.disk_real_id),
    note: row.note,
    type: row.type,
    created: formatDanubeTime(new Date(row.created)),
    status: row.status,
    size: row.size === null ? null : Number(row.size),
    id: row.id,
    fsfreeze: row.fsfreeze === 1,
    pinned: row.pinned === 1,
  };
}
