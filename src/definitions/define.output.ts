/**
 * The snapshot definition object (spec 5.2), keys in the order Danube emits them, with esnap's
 * optional fields appended after `fsfreeze`; extended mode adds the `snapshots` count and then
 * esnap's monitoring fields (`next_run`, `last_run`, `last_success`, `last_error`).
 */
import type { VmDiskRow } from '../db/schema.js';
import { arrayDiskId } from '../vms/vm.lookup.js';
import type { DefineListRow } from './define.repository.js';
import { monitoringFields } from './define.common.js';

export interface DefineObject {
  hostname: string;
  vm_uuid: string;
  name: string;
  disk_id: number;
  desc: string;
  active: boolean;
  schedule: string;
  retention: number;
  fsfreeze: boolean;
  tz: string;
  catchup: boolean;
  retention_days: number | null;
  snapshots?: number;
  /** Next scheduled slot (null: paused, or a schedule that never fires). */
  next_run?: string | null;
  /** When the definition last started a run. */
  last_run?: string | null;
  /** When an automatic snapshot of it last succeeded. */
  last_success?: string | null;
  /** Why its last run failed; null once a run succeeds. */
  last_error?: string | null;
}

/**
 * `disks` holds the VM's current disks (more VMs' disks are fine): the array id is computed now,
 * as Danube does, and is 0 when the disk is gone.
 */
export function defineObject(row: DefineListRow, disks: readonly VmDiskRow[], extended: boolean): DefineObject {
  const own = disks.filter((d) => d.vm_uuid === row.vm_uuid);
  const obj: DefineObject = {
    hostname: row.hostname,
    vm_uuid: row.vm_uuid,
    name: row.name,
    disk_id: arrayDiskId(own, row.disk_real_id),
    desc: row.desc,
    active: row.active === 1,
    schedule: row.schedule,
    retention: row.retention,
    fsfreeze: row.fsfreeze === 1,
    tz: row.tz,
    catchup: row.catchup === 1,
    retention_days: row.retention_days,
  };
  if (extended) {
    obj.snapshots = row.snapshots ?? 0;
    Object.assign(obj, monitoringFields(row));
  }
  return obj;
}

/** Objects for a list: disks grouped once per VM instead of filtered per row. */
export function defineObjects(rows: readonly DefineListRow[], disks: readonly VmDiskRow[], extended: boolean): DefineObject[] {
  const byVm = new Map<string, VmDiskRow[]>();
  for (const d of disks) {
    const list = byVm.get(d.vm_uuid);
    if (list) list.push(d);
    else byVm.set(d.vm_uuid, [d]);
  }
  return rows.map((r) => defineObject(r, byVm.get(r.vm_uuid) ?? [], extended));
}
