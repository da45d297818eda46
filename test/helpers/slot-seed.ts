/**
 * Many VMs, each with one 1 MiB disk and one active definition due at `nextRun`: the seeding of a
 * big scheduler slot, shared by test/scheduler/slot-scale.test.ts (counts) and
 * bench/scheduler.bench.ts (timings). Inserted 500 VMs per statement and table; no test-runner
 * import, because bench/ compiles this file.
 *
 * @example
 *   await seedSlotDefinitions(db, { n: 5000, nodeId, storageId, nextRun: SLOT, schedule: '0 1 * * *', now, prefix: 'sc' });
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../../src/db/schema.js';

export interface SlotSeed {
  /** Definitions (one VM and disk each). */
  readonly n: number;
  readonly nodeId: number;
  readonly storageId: number;
  /** ISO instant every definition is due at. */
  readonly nextRun: string;
  /** Cron schedule of the definitions (daily at the slot, say). */
  readonly schedule: string;
  /** ISO time of the rows' created/changed columns. */
  readonly now: string;
  /** Hostnames are `<prefix><i>`. */
  readonly prefix: string;
  /** VM status (1 running, 2 stopped: both can be snapshotted). Default 1. */
  readonly vmStatus?: number;
  /** Called after each chunk of VMs is inserted (the bench writes their disk images). */
  readonly afterChunk?: (vms: ReadonlyArray<{ uuid: string; hostname: string }>) => Promise<void>;
}

export async function seedSlotDefinitions(db: Kysely<Database>, s: SlotSeed): Promise<void> {
  const now = s.now;
  for (let i = 0; i < s.n; i += 500) {
    const vms = Array.from({ length: Math.min(500, s.n - i) }, (_, k) => ({ uuid: randomUUID(), hostname: `${s.prefix}${i + k}` }));
    await db
      .insertInto('vm')
      .values(
        vms.map((v) => ({
          uuid: v.uuid, hostname: v.hostname, alias: v.hostname, dc_id: 1, owner_id: 1, node_id: s.nodeId, brand: 'kvm', status: s.vmStatus ?? 1,
          status_change: now, qmp_socket: null, qga_socket: null, snapshot_limit_manual: null, snapshot_limit_auto: null,
          snapshot_size_limit: null, snapshot_size_percent_limit: null, created: now, changed: now,
        })),
      )
      .execute();
    await db
      .insertInto('vm_disk')
      .values(vms.map((v) => ({ vm_uuid: v.uuid, real_id: 0, storage_id: s.storageId, path: `${v.uuid}-disk0`, size_mb: 1, created: now })))
      .execute();
    await db
      .insertInto('snapshot_define')
      .values(
        vms.map((v) => ({
          vm_uuid: v.uuid, disk_real_id: 0, name: 'daily', desc: '', schedule: s.schedule, retention: 7, active: 1, fsfreeze: 0, tz: 'UTC',
          catchup: 1, retention_days: null, next_run: s.nextRun, last_run: null, last_success: null, last_error: null, created: now, changed: now,
        })),
      )
      .execute();
    await s.afterChunk?.(vms);
  }
}

/**
 * A node with no agent (its tasks stay queued) and one `file` storage on it, where a slot's
 * definitions are seeded. Returns their ids.
 */
export async function seedIdleStorage(db: Kysely<Database>, hostname: string, now: string): Promise<{ nodeId: number; storageId: number }> {
  const node = await db
    .insertInto('node')
    .values({ hostname, uuid: randomUUID(), status: 2, last_heartbeat: new Date().toISOString(), created: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  const storage = await db
    .insertInto('node_storage')
    .values({ node_id: node.id, name: 'default', driver: 'file', config: '{"root":"/nonexistent"}', size: null, size_free: null, created: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { nodeId: node.id, storageId: storage.id };
}
