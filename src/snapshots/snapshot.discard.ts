/**
 * Pending discards (migration 0012): snapshots that a create which ended FAILURE may have left on
 * storage. Its answer said "no snapshot", so nothing of it may stay, and no sync may adopt it as a
 * found snapshot. The list outlives every task: it is written in the create's failure completion,
 * each sync of the disk destroys the ids it read before listing and deletes those rows in its own
 * completion, and until then no sync adopts them. A disk that no sync reaches (its repair sync
 * could not take the disk's lock, or was cut off in turn) is synced by the discard sweep
 * (snapshot.discard-sweep.ts).
 *
 * Before this table the list lived only in the repair sync's payload: when that sync was cut off
 * by another kill, the next sync of the disk adopted the leftover (the chaos run, seed 1 with
 * 10,000 operations: six violations).
 *
 * @example
 *   await recordDiscards(trx, [{ vmUuid, path: 'disk1', snapshot: 'es-42', taskId }], now);
 *   const byPath = await pendingDiscards(trx, vmUuid, ['disk1']);   // Map { 'disk1' => ['es-42'] }
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database, TaskRow } from '../db/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

export interface Discard {
  readonly vmUuid: string;
  readonly path: string;
  /** The id on storage (es-<n>, as-<n>). */
  readonly snapshot: string;
  readonly taskId: string;
}

/** Records discards; one already recorded stays as it is. */
export async function recordDiscards(db: Db, discards: readonly Discard[], now: string): Promise<void> {
  for (const d of discards) {
    await db
      .insertInto('snapshot_discard')
      .values({ vm_uuid: d.vmUuid, disk_path: d.path, snapshot: d.snapshot, task_id: d.taskId, created: now })
      .onConflict((oc) => oc.columns(['vm_uuid', 'disk_path', 'snapshot']).doNothing())
      .execute();
  }
}

/** What a create task may have made: its items' ids by disk path (its payload). */
export function createDiscards(task: Pick<TaskRow, 'id' | 'vm_uuid' | 'payload'>): Discard[] {
  if (!task.vm_uuid) return [];
  const payload = JSON.parse(task.payload) as { op?: string; items?: Array<{ disk?: { path?: unknown }; id?: unknown }> };
  if (payload.op !== 'create') return [];
  const out: Discard[] = [];
  for (const item of payload.items ?? []) {
    const path = item.disk?.path;
    if (typeof path === 'string' && typeof item.id === 'string') out.push({ vmUuid: task.vm_uuid, path, snapshot: item.id, taskId: task.id });
  }
  return out;
}

/** Pending discard ids of a VM's disks, by path (disks with none are absent). */
export async function pendingDiscards(db: Db, vmUuid: string, paths: readonly string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (paths.length === 0) return out;
  const rows = await db
    .selectFrom('snapshot_discard')
    .select(['disk_path', 'snapshot'])
    .where('vm_uuid', '=', vmUuid)
    .where('disk_path', 'in', [...paths])
    .orderBy('snapshot')
    .execute();
  for (const r of rows) out.set(r.disk_path, [...(out.get(r.disk_path) ?? []), r.snapshot]);
  return out;
}

/** A sync destroyed these ids before it listed the disk: their rows go. */
export async function clearDiscards(trx: Transaction<Database>, vmUuid: string, path: string, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await trx.deleteFrom('snapshot_discard').where('vm_uuid', '=', vmUuid).where('disk_path', '=', path).where('snapshot', 'in', [...ids]).execute();
}
