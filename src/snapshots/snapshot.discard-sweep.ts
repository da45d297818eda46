/**
 * The discard sweep (see snapshot.discard.ts): a disk whose pending discards no sync has reached
 * gets one, so what a failed create left on storage goes even when no one syncs that disk.
 */
import type { AppContext } from '../app-context.js';
import { FailureError, LOCK_FAILED } from '../domain/errors.js';
import { Ticker } from '../lib/ticker.js';
import { NODE_ONLINE } from '../nodes/node.repository.js';
import { vmDisks } from '../vms/vm.lookup.js';
import { loadStorageAndNode, systemCaller } from './snapshot.context.js';
import { submitVmSync } from './snapshot.sync.js';

/**
 * One pass of the discard sweep: a disk with pending discards that this process saw pending on
 * its previous pass too (`seen`, updated here) gets a sync, when its node is online; a busy disk
 * (its lock held) is left for the next pass. Discards of a VM or disk that no longer exists go.
 * Returns the syncs submitted. Several servers may run it at once: the disk lock lets one sync in.
 */
export async function retryPendingDiscards(ctx: AppContext, seen: Set<string>): Promise<number> {
  const groups = await ctx.db.selectFrom('snapshot_discard').select(['vm_uuid', 'disk_path']).distinct().execute();
  const now = new Set<string>();
  let submitted = 0;
  for (const g of groups) {
    const key = `${g.vm_uuid}/${g.disk_path}`;
    now.add(key);
    const vm = await ctx.db.selectFrom('vm').selectAll().where('uuid', '=', g.vm_uuid).executeTakeFirst();
    const disks = vm ? await vmDisks(ctx.db, vm.uuid) : [];
    const i = disks.findIndex((d) => d.path === g.disk_path);
    if (!vm || i < 0) {
      // Nothing left to destroy them on (a disk's delete removes its image and snapshots).
      await ctx.db.deleteFrom('snapshot_discard').where('vm_uuid', '=', g.vm_uuid).where('disk_path', '=', g.disk_path).execute();
      continue;
    }
    if (!seen.has(key)) continue;
    const disk = disks[i]!;
    try {
      const { storage, node } = await loadStorageAndNode(ctx.db, disk);
      if (node.status !== NODE_ONLINE) continue;
      await submitVmSync(ctx, await systemCaller(ctx, vm.dc_id), { vm, disks, disk, diskArrayId: i + 1, storage, node }, 'i');
      submitted++;
    } catch (err) {
      // A held lock: another task works on the disk; the next pass tries again.
      if (!(err instanceof FailureError && err.result === LOCK_FAILED)) ctx.log.error({ err, vm: vm.hostname, disk: g.disk_path }, 'discard sync could not start');
    }
  }
  seen.clear();
  for (const k of now) seen.add(k);
  return submitted;
}

/** The discard sweep's loop (every server runs one; see retryPendingDiscards). */
export function startDiscardSweep(ctx: AppContext, everyMs = 30_000): Ticker {
  const seen = new Set<string>();
  const ticker = new Ticker('snapshot-discard', everyMs, async () => void (await retryPendingDiscards(ctx, seen)), ctx.log);
  ticker.start();
  return ticker;
}
