/**
 * The gauges read from the database at scrape time. Each scrape resets them first, so a deleted
 * definition or VM disappears from the output instead of keeping its last value.
 */
import type { AppContext } from '../app-context.js';
import type { TaskQueue } from '../queue/queue.js';
import { definitionStatuses } from '../scheduler/stale.js';
import type { Metrics } from './metrics.js';

const STATUS_NAMES: Readonly<Record<number, string>> = { 1: 'ok', 2: 'pending', 3: 'rollback', 4: 'lost' };

export async function collectState(ctx: Pick<AppContext, 'db' | 'clock'>, queue: TaskQueue, m: Metrics): Promise<void> {
  const now = ctx.clock.now();
  const defs = await definitionStatuses(ctx.db, now);

  const groups = await ctx.db
    .selectFrom('snapshot')
    .innerJoin('vm', 'vm.uuid', 'snapshot.vm_uuid')
    .select((eb) => [
      'snapshot.vm_uuid',
      'snapshot.disk_real_id',
      'snapshot.status',
      'vm.hostname',
      eb.fn.countAll<number>().as('n'),
      eb.fn.sum<number>('snapshot.size').as('bytes'),
    ])
    .groupBy(['snapshot.vm_uuid', 'snapshot.disk_real_id', 'snapshot.status', 'vm.hostname'])
    .execute();
  const disks = await ctx.db.selectFrom('vm_disk').select(['vm_uuid', 'real_id']).orderBy('vm_uuid').orderBy('real_id').execute();
  const arrayIds = new Map<string, number>();
  const seen = new Map<string, number>();
  for (const d of disks) {
    const n = (seen.get(d.vm_uuid) ?? 0) + 1;
    seen.set(d.vm_uuid, n);
    arrayIds.set(`${d.vm_uuid}/${d.real_id}`, n);
  }
  const nodes = await ctx.db.selectFrom('node').select('hostname').execute();
  const depths = await Promise.all(nodes.map(async (n) => [n.hostname, await queue.depth(n.hostname)] as const));
  const storages = await ctx.db
    .selectFrom('node_storage')
    .innerJoin('node', 'node.id', 'node_storage.node_id')
    .select(['node.hostname', 'node_storage.name', 'node_storage.size', 'node_storage.size_free'])
    .execute();

  // All reads done: swap the values in one synchronous step, so a scrape never sees half of them.
  m.lastSuccess.reset();
  m.stale.reset();
  for (const d of defs) {
    const l = { vm: d.labels.vm, disk: String(d.labels.disk), define: d.labels.define };
    m.lastSuccess.set(l, d.lastSuccess === null ? 0 : Date.parse(d.lastSuccess) / 1000);
    m.stale.set(l, d.stale ? 1 : 0);
  }
  m.snapshots.reset();
  m.snapshotBytes.reset();
  const bytes = new Map<string, { vm: string; disk: string; total: number }>();
  for (const g of groups) {
    // A disk no longer attached keeps its snapshots; they are labelled with the real id, prefixed `r`.
    const disk = String(arrayIds.get(`${g.vm_uuid}/${g.disk_real_id}`) ?? `r${g.disk_real_id}`);
    m.snapshots.inc({ vm: g.hostname, disk, status: STATUS_NAMES[g.status] ?? String(g.status) }, Number(g.n));
    const key = `${g.hostname}/${disk}`;
    const b = bytes.get(key) ?? { vm: g.hostname, disk, total: 0 };
    if (g.status !== 4) b.total += Number(g.bytes ?? 0);
    bytes.set(key, b);
  }
  for (const b of bytes.values()) m.snapshotBytes.set({ vm: b.vm, disk: b.disk }, b.total);
  m.queueDepth.reset();
  for (const [node, depth] of depths) m.queueDepth.set({ node }, depth);
  // A storage whose agent never reported its usage has no sample rather than a made-up 0.
  m.storageSize.reset();
  m.storageFree.reset();
  for (const s of storages) {
    const l = { node: s.hostname, storage: s.name };
    if (s.size !== null) m.storageSize.set(l, Number(s.size));
    if (s.size_free !== null) m.storageFree.set(l, Number(s.size_free));
  }
}
