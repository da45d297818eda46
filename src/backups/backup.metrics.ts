/**
 * `esnap_backup_*` metrics, on the same registry as the others (src/metrics/): backups per VM disk
 * and status, their bytes, each backup definition's last success and staleness (read from the
 * database at scrape time), and the duration of backup tasks per operation and result.
 */
import { Gauge, Histogram, type Registry } from 'prom-client';
import type { AppContext } from '../app-context.js';
import type { CompletionListener } from '../tasks/task.types.js';
import { durationListener } from '../metrics/metrics.js';
import { isStale, latestSlots } from '../scheduler/slot-plan.js';

const STATUS: Readonly<Record<number, string>> = { 1: 'ok', 2: 'pending', 3: 'restore', 4: 'lost', 5: 'damaged' };
const OPERATIONS: Readonly<Record<string, string>> = {
  backup_create: 'create',
  backup_restore: 'restore',
  backup_verify: 'verify',
  backup_delete: 'delete',
};
const BUCKETS = [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600];

export class BackupMetrics {
  readonly duration: Histogram<'operation' | 'result'>;

  constructor(ctx: AppContext, registry: Registry) {
    const registers = [registry];
    // One read per scrape fills the four gauges: each gauge's collect joins the read in flight
    // (the registry collects all metrics at once).
    let reading: Promise<void> | null = null;
    const refresh = (): Promise<void> => {
      reading ??= collect().finally(() => {
        reading = null;
      });
      return reading;
    };
    const backups: Gauge<'vm' | 'disk' | 'status'> = new Gauge({
      name: 'esnap_backups',
      help: 'Backups per VM (original hostname), disk and status (ok, pending, restore, lost, damaged)',
      labelNames: ['vm', 'disk', 'status'],
      registers,
      collect: refresh,
    });
    const bytes = new Gauge({ name: 'esnap_backup_bytes', help: 'Bytes of the image streams stored as backups, per VM and disk (pending ones excluded)', labelNames: ['vm', 'disk'], registers, collect: refresh });
    const lastSuccess = new Gauge({ name: 'esnap_backup_definition_last_success_timestamp_seconds', help: 'Last successful backup of a backup definition (0: none yet)', labelNames: ['vm', 'disk', 'define'], registers, collect: refresh });
    const stale = new Gauge({ name: 'esnap_backup_definition_stale', help: '1 when no backup of an active backup definition succeeded within two periods', labelNames: ['vm', 'disk', 'define'], registers, collect: refresh });
    this.duration = new Histogram({ name: 'esnap_backup_operation_duration_seconds', help: 'Duration of backup tasks (create, restore, verify, delete)', labelNames: ['operation', 'result'], buckets: BUCKETS, registers });
    const collect = async (): Promise<void> => {
      const rows = await ctx.db
        .selectFrom('backup')
        .select((eb) => ['vm_hostname', 'vm_disk_id', 'status', eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('size').as('bytes')])
        .groupBy(['vm_hostname', 'vm_disk_id', 'status'])
        .execute();
      const defs = await ctx.db
        .selectFrom('backup_define as d')
        .innerJoin('vm', 'vm.uuid', 'd.vm_uuid')
        .select(['d.name', 'd.vm_uuid', 'd.disk_real_id', 'd.active', 'd.schedule', 'd.tz', 'd.last_success', 'd.created', 'vm.hostname'])
        .execute();
      const disks = await ctx.db.selectFrom('vm_disk').select(['vm_uuid', 'real_id']).orderBy('vm_uuid').orderBy('real_id').execute();
      const now = ctx.clock.now();
      backups.reset();
      bytes.reset();
      lastSuccess.reset();
      stale.reset();
      const total = new Map<string, number>();
      for (const r of rows) {
        const l = { vm: r.vm_hostname, disk: String(r.vm_disk_id) };
        backups.inc({ ...l, status: STATUS[r.status] ?? String(r.status) }, Number(r.n));
        if (r.status !== 2) total.set(`${l.vm}\u0000${l.disk}`, (total.get(`${l.vm}\u0000${l.disk}`) ?? 0) + Number(r.bytes ?? 0));
      }
      for (const [k, v] of total) {
        const [vm, disk] = k.split('\u0000') as [string, string];
        bytes.set({ vm, disk }, v);
      }
      for (const d of defs) {
        const disk = String(disks.filter((x) => x.vm_uuid === d.vm_uuid).findIndex((x) => x.real_id === d.disk_real_id) + 1);
        const l = { vm: d.hostname, disk, define: d.name };
        lastSuccess.set(l, d.last_success === null ? 0 : Date.parse(d.last_success) / 1000);
        let slots: Date[] = [];
        try {
          slots = latestSlots(d.schedule, d.tz, now, 2);
        } catch {
          slots = [];
        }
        stale.set(l, isStale({ active: d.active === 1, schedule: d.schedule, tz: d.tz, lastSuccess: d.last_success, created: d.created }, now, slots) ? 1 : 0);
      }
    };
  }

  listener(): CompletionListener {
    return durationListener(OPERATIONS, this.duration);
  }
}
