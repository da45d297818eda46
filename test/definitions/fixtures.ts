/**
 * Rows the definition tests need, written straight into the test server's database: VMs, disks,
 * users, snapshots and DC settings (the VM and account APIs are not what these tests are about).
 */
import { randomUUID } from 'node:crypto';
import { hashKey } from '../../src/accounts/secrets.js';
import { insertVm, newVmRow } from '../../src/vms/vm.repository.js';
import type { TestServer } from '../helpers/server.js';

export interface Ids {
  dcId: number;
  nodeId: number;
  storageId: number;
}

export async function ids(s: TestServer): Promise<Ids> {
  const db = s.runtime.ctx.db;
  const dc = await db.selectFrom('dc').select('id').where('name', '=', 'main').executeTakeFirstOrThrow();
  const node = await db.selectFrom('node').select('id').where('hostname', '=', s.node).executeTakeFirstOrThrow();
  const storage = await db
    .selectFrom('node_storage')
    .select('id')
    .where('node_id', '=', node.id)
    .where('name', '=', 'default')
    .executeTakeFirstOrThrow();
  return { dcId: dc.id, nodeId: node.id, storageId: storage.id };
}

export interface VmOptions {
  owner?: number;
  brand?: string;
  status?: number;
  disks?: number;
}

/** Inserts a VM with `disks` disks (real ids 0…n-1) and returns its uuid. */
export async function addVm(s: TestServer, hostname: string, o: VmOptions = {}): Promise<string> {
  const db = s.runtime.ctx.db;
  const { dcId, nodeId, storageId } = await ids(s);
  const uuid = randomUUID();
  const now = new Date().toISOString();
  const vm = { uuid, hostname, dc_id: dcId, owner_id: o.owner ?? 1, node_id: nodeId, status: o.status ?? 2 };
  await insertVm(db, newVmRow({ ...vm, alias: hostname.split('.')[0] ?? hostname, brand: o.brand ?? 'kvm', status_change: null }, now));
  for (let i = 0; i < (o.disks ?? 1); i++) {
    await db
      .insertInto('vm_disk')
      .values({ vm_uuid: uuid, real_id: i, storage_id: storageId, path: `${uuid}-disk${i}.img`, size_mb: 1, created: now })
      .execute();
  }
  return uuid;
}

/** Inserts a user with API access in DC `main` and returns its id and API key. */
export async function addUser(s: TestServer, username: string): Promise<{ id: number; key: string }> {
  const db = s.runtime.ctx.db;
  const { dcId } = await ids(s);
  const key = `key-${username}-${randomUUID()}`;
  const row = await db
    .insertInto('account')
    .values({
      username,
      email: `${username}@example.com`,
      password_hash: null,
      api_key_hash: hashKey(key),
      is_super_admin: 0,
      api_access: 1,
      is_active: 1,
      current_dc_id: dcId,
      created: new Date().toISOString(),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, key };
}

export async function setDcSettings(s: TestServer, settings: Record<string, unknown>): Promise<void> {
  await s.runtime.ctx.db.updateTable('dc').set({ settings: JSON.stringify(settings) }).where('name', '=', 'main').execute();
}

export async function setNodeStatus(s: TestServer, status: number): Promise<void> {
  await s.runtime.ctx.db.updateTable('node').set({ status }).where('hostname', '=', s.node).execute();
}

export async function setVmStatus(s: TestServer, uuid: string, status: number): Promise<void> {
  await s.runtime.ctx.db.updateTable('vm').set({ status }).where('uuid', '=', uuid).execute();
}

export async function defineRow(s: TestServer, vmUuid: string, name: string) {
  return s.runtime.ctx.db
    .selectFrom('snapshot_define')
    .selectAll()
    .where('vm_uuid', '=', vmUuid)
    .where('name', '=', name)
    .executeTakeFirst();
}

/** Inserts a snapshot row linked to a definition (automatic, status as given). */
export async function addSnapshot(s: TestServer, vmUuid: string, defineId: number | null, name: string, status = 1): Promise<number> {
  const { storageId } = await ids(s);
  const now = new Date().toISOString();
  const row = await s.runtime.ctx.db
    .insertInto('snapshot')
    .values({
      vm_uuid: vmUuid,
      define_id: defineId,
      name,
      type: 1,
      status,
      storage_id: storageId,
      size: null,
      note: '',
      fsfreeze: 0,
      pinned: 0,
      disk_real_id: 0,
      status_change: null,
      created: now,
      changed: now,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export const DEFINE_KEYS = [
  'hostname',
  'vm_uuid',
  'name',
  'disk_id',
  'desc',
  'active',
  'schedule',
  'retention',
  'fsfreeze',
  'tz',
  'catchup',
  'retention_days',
];
export const EXTENDED_KEYS = [...DEFINE_KEYS, 'snapshots', 'next_run', 'last_run', 'last_success', 'last_error'];

/** A dummy task id of user 1 acting on an object of `owner` in DC `dc`. */
export function dummyIdRe(user: number, owner: number, dc: number): RegExp {
  return new RegExp(`^${user}d${owner}d${dc}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$`);
}
