/**
 * A new VM's row with esnap's defaults, and its insert: shared by the API (src/vms), the libvirt
 * inventory (src/hypervisor) and the benchmarks, below all of them.
 */
import type { Insertable, Kysely, Transaction } from 'kysely';
import type { Database, VmRow, VmTable } from './schema.js';

type Db = Kysely<Database> | Transaction<Database>;

/** What a new VM's row needs; everything else has the defaults of `newVmRow`. */
export type NewVm = Pick<Insertable<VmTable>, 'uuid' | 'hostname' | 'dc_id' | 'owner_id' | 'node_id' | 'status'> & Partial<Insertable<VmTable>>;

/**
 * A new VM's row: alias = hostname, brand kvm, no guest sockets, no snapshot limits, status changed,
 * created and changed `now`; any of them can be given in `vm`.
 *
 * @example
 *   await insertVm(db, newVmRow({ uuid, hostname: 'web01', dc_id: 1, owner_id: 1, node_id: 1, status: 1 }, now));
 */
export function newVmRow(vm: NewVm, now: string): Insertable<VmTable> {
  return {
    alias: vm.hostname,
    brand: 'kvm',
    status_change: now,
    qmp_socket: null,
    qga_socket: null,
    snapshot_limit_manual: null,
    snapshot_limit_auto: null,
    snapshot_size_limit: null,
    snapshot_size_percent_limit: null,
    created: now,
    changed: now,
    ...vm,
  };
}

export async function insertVm(db: Db, row: Insertable<VmTable>): Promise<VmRow> {
  return db.insertInto('vm').values(row).returningAll().executeTakeFirstOrThrow();
}
