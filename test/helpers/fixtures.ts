/**
 * Test fixtures that write the registry directly (VMs, disks, users), so snapshot tests do not
 * depend on the registry API. Disk images are real sparse files on the server's file storage.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { TestServer } from './server.js';
import { hashKey } from '../../src/accounts/secrets.js';
import { insertVm, newVmRow } from '../../src/vms/vm.repository.js';

export interface VmFixture {
  uuid: string;
  hostname: string;
  diskPaths: string[];
}

export async function makeVm(
  s: TestServer,
  hostname: string,
  opts: { disks?: number[]; ownerId?: number; status?: number; qga?: string | null; limits?: Partial<Record<string, number>> } = {},
): Promise<VmFixture> {
  const db = s.runtime.ctx.db;
  const node = await db.selectFrom('node').selectAll().where('hostname', '=', s.node).executeTakeFirstOrThrow();
  const storage = await db
    .selectFrom('node_storage')
    .selectAll()
    .where('node_id', '=', node.id)
    .where('name', '=', 'default')
    .executeTakeFirstOrThrow();
  const dc = await db.selectFrom('dc').selectAll().where('name', '=', 'main').executeTakeFirstOrThrow();
  const uuid = randomUUID();
  const now = new Date().toISOString();
  await insertVm(
    db,
    newVmRow(
      {
        uuid,
        hostname,
        dc_id: dc.id,
        owner_id: opts.ownerId ?? 1,
        node_id: node.id,
        status: opts.status ?? 1,
        qga_socket: opts.qga ?? null,
        snapshot_limit_manual: opts.limits?.['snapshot_limit_manual'] ?? null,
        snapshot_limit_auto: opts.limits?.['snapshot_limit_auto'] ?? null,
        snapshot_size_limit: opts.limits?.['snapshot_size_limit'] ?? null,
        snapshot_size_percent_limit: opts.limits?.['snapshot_size_percent_limit'] ?? null,
      },
      now,
    ),
  );
  const root = (JSON.parse(storage.config) as { root: string }).root;
  const diskPaths: string[] = [];
  for (const [i, sizeMb] of (opts.disks ?? [1]).entries()) {
    const path = `${uuid}-disk${i}`;
    await db
      .insertInto('vm_disk')
      .values({ vm_uuid: uuid, real_id: i, storage_id: storage.id, path, size_mb: sizeMb, created: now })
      .execute();
    const file = join(root, path);
    await mkdir(dirname(file), { recursive: true });
    const fh = await open(file, 'w');
    await fh.truncate(sizeMb * 1024 * 1024);
    await fh.close();
    diskPaths.push(file);
  }
  return { uuid, hostname, diskPaths };
}

export async function makeUser(
  s: TestServer,
  username: string,
  opts: { superAdmin?: boolean; apiAccess?: boolean } = {},
): Promise<{ id: number; key: string }> {
  const key = `key-${username}-${randomUUID()}`;
  const db = s.runtime.ctx.db;
  const dc = await db.selectFrom('dc').selectAll().where('name', '=', 'main').executeTakeFirstOrThrow();
  const row = await db
    .insertInto('account')
    .values({
      username,
      email: `${username}@example.test`,
      password_hash: null,
      api_key_hash: hashKey(key),
      is_super_admin: opts.superAdmin ? 1 : 0,
      api_access: opts.apiAccess === false ? 0 : 1,
      is_active: 1,
      current_dc_id: dc.id,
      created: new Date().toISOString(),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, key };
}

/** A node row with no agent behind it (online, so tasks are accepted for it); returns its id. */
export async function insertIdleNode(s: TestServer, hostname: string): Promise<number> {
  const now = new Date().toISOString();
  const row = await s.runtime.ctx.db
    .insertInto('node')
    .values({ hostname, uuid: randomUUID(), status: 2, last_heartbeat: now, created: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

/** A VM on a node that has no agent: its tasks stay PENDING until cancelled. */
export async function vmOnIdleNode(s: TestServer, hostname: string): Promise<void> {
  const db = s.runtime.ctx.db;
  const now = new Date().toISOString();
  const node = { id: await insertIdleNode(s, `idle-${hostname}`) };
  const storage = await db
    .insertInto('node_storage')
    .values({ node_id: node.id, name: 'default', driver: 'file', config: '{"root":"/nonexistent"}', size: null, size_free: null, created: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  const uuid = randomUUID();
  await insertVm(db, newVmRow({ uuid, hostname, dc_id: 1, owner_id: 1, node_id: node.id, status: 1 }, now));
  await db.insertInto('vm_disk').values({ vm_uuid: uuid, real_id: 0, storage_id: storage.id, path: `${uuid}-disk0`, size_mb: 1, created: now }).execute();
}
