/** Rows the backup tests need: a backup node with storages of given drivers, a VM disk on a given driver. */
import { expect } from 'vitest';
import type { TestServer } from '../helpers/server.js';

/** Inserts (or marks) a node and its storages; `isBackup` sets node.is_backup. */
export async function addNode(s: TestServer, hostname: string, storages: Record<string, string>, isBackup = true): Promise<number> {
  const db = s.runtime.ctx.db;
  const now = new Date().toISOString();
  const node = await db
    .insertInto('node')
    .values({ hostname, uuid: `uuid-${hostname}`, status: 2, last_heartbeat: now, created: now, is_backup: isBackup ? 1 : 0 })
    .returning('id')
    .executeTakeFirstOrThrow();
  for (const [name, driver] of Object.entries(storages)) {
    await db
      .insertInto('node_storage')
      .values({ node_id: node.id, name, driver, config: JSON.stringify({ root: `/nonexistent/${hostname}/${name}` }), size: null, size_free: null, created: now })
      .execute();
  }
  return node.id;
}

/** Moves every disk of a VM onto a new storage of `driver` on the VM's node (rows only). */
export async function putVmOnDriver(s: TestServer, vmUuid: string, name: string, driver: string): Promise<void> {
  const db = s.runtime.ctx.db;
  const vm = await db.selectFrom('vm').select('node_id').where('uuid', '=', vmUuid).executeTakeFirstOrThrow();
  const now = new Date().toISOString();
  const st = await db
    .insertInto('node_storage')
    .values({ node_id: vm.node_id, name, driver, config: JSON.stringify({ root: `/nonexistent/${name}` }), size: null, size_free: null, created: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db.updateTable('vm_disk').set({ storage_id: st.id }).where('vm_uuid', '=', vmUuid).execute();
}

export async function bkpDefRow(s: TestServer, vmUuid: string, name: string) {
  return s.runtime.ctx.db.selectFrom('backup_define').selectAll().where('vm_uuid', '=', vmUuid).where('name', '=', name).executeTakeFirst();
}

/**
 * Defines each VM of `disks` over the API with one 32 MiB disk on the storage named for it, then the
 * backup definition `daily` of the first VM (`body`: its type, node, zpool, …). Returns each VM's
 * disk path.
 */
export async function defineVmsWithBackup(s: TestServer, disks: Record<string, string>, body: Record<string, unknown>): Promise<Record<string, string>> {
  const paths: Record<string, string> = {};
  for (const [vm, zpool] of Object.entries(disks)) {
    expect((await s.req('POST', `/api/vm/${vm}/define/`, { body: {} })).status).toBe(201);
    const d = await s.req('POST', `/api/vm/${vm}/define/disk/1/`, { body: { size: 32, zpool } });
    expect(d.status, d.text).toBe(201);
    paths[vm] = d.body.result.path as string;
  }
  const def = await s.req('POST', `/api/vm/${Object.keys(disks)[0]}/define/backup/daily`, { body });
  expect(def.status, def.text).toBe(201);
  return paths;
}
