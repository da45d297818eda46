/**
 * The backup definition object, keys in the order Danube's BackupDefineSerializer declares them
 * (hostname, vm_uuid, dc, name, disk_id, type, node, zpool, desc, bwlimit, active, schedule,
 * retention, compression, fsfreeze), then esnap's `tz` and `catchup`; extended mode adds Danube's `backups`
 * count and esnap's monitoring fields. Danube shows non-admins the node's colour instead of its
 * hostname; esnap nodes have no colour, so non-admins get `node: null`.
 */
import type { VmDiskRow } from '../db/schema.js';
import { arrayDiskId } from '../vms/vm.lookup.js';
import { monitoringFields } from '../definitions/define.common.js';
import type { BkpDefListRow } from './bkpdef.repository.js';

export interface BkpDefObject {
  hostname: string;
  vm_uuid: string;
  dc: string;
  name: string;
  disk_id: number;
  type: number;
  node: string | null;
  zpool: string;
  desc: string;
  bwlimit: number | null;
  active: boolean;
  schedule: string;
  retention: number;
  compression: number;
  fsfreeze: boolean;
  tz: string;
  /** esnap: after downtime the most recent missed slot fires once (true), or a late slot is skipped. */
  catchup: boolean;
  backups?: number;
  next_run?: string | null;
  last_run?: string | null;
  last_success?: string | null;
  last_error?: string | null;
}

export function bkpDefObject(row: BkpDefListRow, disks: readonly VmDiskRow[], extended: boolean, isAdmin: boolean): BkpDefObject {
  const own = disks.filter((d) => d.vm_uuid === row.vm_uuid);
  const obj: BkpDefObject = {
    hostname: row.hostname,
    vm_uuid: row.vm_uuid,
    dc: row.dc_name,
    name: row.name,
    disk_id: arrayDiskId(own, row.disk_real_id),
    type: row.type,
    node: isAdmin ? row.node_hostname : null,
    zpool: row.storage_name,
    desc: row.desc,
    bwlimit: row.bwlimit,
    active: row.active === 1,
    schedule: row.schedule,
    retention: row.retention,
    compression: row.compression,
    fsfreeze: row.fsfreeze === 1,
    tz: row.tz,
    catchup: row.catchup === 1,
  };
  if (extended) {
    obj.backups = row.backups ?? 0;
    Object.assign(obj, monitoringFields(row));
  }
  return obj;
}
