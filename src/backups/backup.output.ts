/**
 * The backup object, keys in the order of Danube's BackupSerializer: hostname (the original one),
 * vm_uuid, vm, dc (node view only), define, name, disk_id, type, node (null for non-admins, as
 * the definition's), zpool, created, status, size, time, note.
 */
import { formatDanubeTime } from '../domain/time.js';
import type { BackupListRow } from './backup.repository.js';

export interface BackupObject {
  hostname: string;
  vm_uuid: string | null;
  vm: string | null;
  dc?: string;
  define: string | null;
  name: string;
  disk_id: number;
  type: number;
  node: string | null;
  zpool: string;
  created: string;
  status: number;
  size: number | null;
  time: number | null;
  note: string;
}

export function backupObject(r: BackupListRow, isAdmin: boolean, nodeView: boolean): BackupObject {
  return {
    hostname: r.vm_hostname,
    vm_uuid: r.vm_current_hostname === null ? null : r.vm_uuid,
    vm: r.vm_current_hostname,
    ...(nodeView ? { dc: r.dc_name } : {}),
    define: r.define_name,
    name: r.name,
    disk_id: r.vm_disk_id,
    type: r.type,
    node: isAdmin ? r.node_hostname : null,
    zpool: r.storage_name,
    created: formatDanubeTime(new Date(r.created)),
    status: r.status,
    size: r.size,
    time: r.time,
    note: r.note,
  };
}
