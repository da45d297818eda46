import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database, NodeRow, NodeStorageRow } from '../db/schema.js';
import type { StorageConfig } from '../storage/drivers.js';

export const NODE_ONLINE = 2;

export interface StorageReport extends StorageConfig {
  readonly size: number | null;
  readonly free: number | null;
}

/** Registers (or refreshes) a node and its storages, as reported by its agent. */
export async function registerNode(
  db: Kysely<Database>,
  hostname: string,
  storages: readonly StorageReport[],
  now: string,
): Promise<NodeRow> {
  return db.transaction().execute(async (trx) => {
    let node = await trx.selectFrom('node').selectAll().where('hostname', '=', hostname).executeTakeFirst();
    if (!node) {
      node = await trx
        .insertInto('node')
        .values({ hostname, uuid: randomUUID(), status: NODE_ONLINE, last_heartbeat: now, created: now })
        .returningAll()
        .executeTakeFirstOrThrow();
    } else {
      await trx.updateTable('node').set({ status: NODE_ONLINE, last_heartbeat: now }).where('id', '=', node.id).execute();
    }
    for (const s of storages) {
      const config = JSON.stringify({ ...(s.root ? { root: s.root } : {}), ...(s.dataset ? { dataset: s.dataset } : {}) });
      const existing = await trx
        .selectFrom('node_storage')
        .select('id')
        .where('node_id', '=', node.id)
        .where('name', '=', s.name)
        .executeTakeFirst();
      if (existing) {
        await trx
          .updateTable('node_storage')
          .set({ driver: s.driver, config, size: s.size, size_free: s.free })
          .where('id', '=', existing.id)
          .execute();
      } else {
        await trx
          .insertInto('node_storage')
          .values({ node_id: node.id, name: s.name, driver: s.driver, config, size: s.size, size_free: s.free, created: now })
          .execute();
      }
    }
    return { ...node, status: NODE_ONLINE, last_heartbeat: now };
  });
}

export async function findNode(db: Kysely<Database>, hostname: string): Promise<NodeRow | undefined> {
  return db.selectFrom('node').selectAll().where('hostname', '=', hostname).executeTakeFirst();
}

/** Every node, by host name. */
export async function listNodes(db: Kysely<Database>): Promise<NodeRow[]> {
  return db.selectFrom('node').selectAll().orderBy('hostname').execute();
}

/** A node's storages, by name. */
export async function listStorages(db: Kysely<Database>, nodeId: number): Promise<NodeStorageRow[]> {
  return db.selectFrom('node_storage').selectAll().where('node_id', '=', nodeId).orderBy('name').execute();
}

export async function findStorage(db: Kysely<Database>, nodeId: number, name: string): Promise<NodeStorageRow | undefined> {
  return db.selectFrom('node_storage').selectAll().where('node_id', '=', nodeId).where('name', '=', name).executeTakeFirst();
}

/** A storage's usage as its agent read it (bytes): `free` is what esnap may still write. */
export interface StorageUsage {
  readonly name: string;
  readonly size: number;
  readonly free: number;
}

/**
 * Records fresh usage of a node's storages (src/nodes/storage.usage.ts says when agents send it).
 * Storages the node never registered are ignored: registration alone creates storage rows.
 */
export async function updateStorageUsage(db: Kysely<Database>, hostname: string, usage: readonly StorageUsage[]): Promise<void> {
  const node = await findNode(db, hostname);
  if (!node) return;
  for (const u of usage) {
    await db.updateTable('node_storage').set({ size: u.size, size_free: u.free }).where('node_id', '=', node.id).where('name', '=', u.name).execute();
  }
}
