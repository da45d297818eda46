/**
 * Danube's retention (spec 8.4): after a successful automatic snapshot, the oldest OK snapshots of
 * its definition beyond `retention` are deleted in one bulk task, as the system user, task type `a`.
 * Pending and lost snapshots do not count; retention 0 keeps everything.
 */
import type { AppContext } from '../app-context.js';
import { SNAP_OK } from './snapshot.repository.js';
import { bulkDelete } from './snapshot.service.js';
import { loadStorageAndNode, systemCaller } from './snapshot.context.js';
import { vmDisks } from '../vms/vm.lookup.js';

export async function runRetention(ctx: AppContext, defineId: number): Promise<void> {
  const def = await ctx.db.selectFrom('snapshot_define').selectAll().where('id', '=', defineId).executeTakeFirst();
  if (!def || def.retention <= 0) return;
  const ok = await ctx.db
    .selectFrom('snapshot')
    .select(['id', 'name', 'pinned'])
    .where('define_id', '=', defineId)
    .where('disk_real_id', '=', def.disk_real_id)
    .where('status', '=', SNAP_OK)
    .orderBy('id')
    .execute();
  const excess = ok.length - def.retention;
  if (excess < 1) return;
  // Pinned snapshots are never pruned; they still count toward the retention total.
  const victims = ok.slice(0, excess).filter((s) => !s.pinned);
  if (victims.length === 0) return;
  const vm = await ctx.db.selectFrom('vm').selectAll().where('uuid', '=', def.vm_uuid).executeTakeFirstOrThrow();
  const disks = await vmDisks(ctx.db, vm.uuid);
  const idx = disks.findIndex((d) => d.real_id === def.disk_real_id);
  if (idx < 0) return;
  const disk = disks[idx]!;
  const { storage, node } = await loadStorageAndNode(ctx.db, disk);
  const caller = await systemCaller(ctx, vm.dc_id);
  try {
    await bulkDelete(
      ctx,
      caller,
      { vm, disks, disk, diskArrayId: idx + 1, storage, node },
      victims.map((v) => v.name),
      { type: 'a' },
    );
  } catch (err) {
    ctx.log.error({ err, vm: vm.hostname, define: def.name }, `Automatic deletion of old snapshots ${vm.hostname}/disk-${idx + 1} failed to start.`);
  }
}
