/** Rows the backup tests need: a backup node with storages of given drivers, a VM disk on a given driver. */
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
