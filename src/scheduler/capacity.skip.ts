/**
 * A scheduled slot whose storage is below ESNAP_MIN_FREE_PERCENT (src/snapshots/capacity.ts) is
 * skipped, not failed: nothing is wrong with the definition, the storage needs room. So, unlike a
 * start failure (run.ts recordStartFailure), no FAILURE task-log entry is written (skipped slots
 * write none, like overlaps) and `last_error` is left alone: a set `last_error` stops retention,
 * and pruning is exactly what frees the space. What happens instead: a warning in the log, the
 * skip counted with reason `capacity`, the alert, and the definition's retention run as after a
 * successful snapshot (old snapshots beyond the count or age are deleted).
 *
 * "Run now" is a user's request and answers 417 like a manual create; it never comes here.
 */
import type { AppContext } from '../app-context.js';
import { alerts } from '../alerts/alert.messages.js';
import { runRetention } from './retention.js';
import type { StorageFullError } from '../snapshots/capacity.js';
import type { FailedStart } from './run.js';
import type { AutomationServices } from './services.js';

/** Records the skip and runs retention (which never throws). Returns the slot's reason text. */
export async function skipForCapacity(ctx: AppContext, services: AutomationServices, f: FailedStart, err: StorageFullError): Promise<string> {
  services.observer.slotsSkipped(f.labels, 'capacity', 1);
  ctx.log.warn(
    {
      define: f.def.name,
      vm: f.labels.vm,
      disk_id: f.diskArrayId,
      storage: err.storage,
      free_percent: Math.round(err.freePercent * 100) / 100,
      min_free_percent: err.minFreePercent,
    },
    'scheduled slot skipped: storage free space below the limit',
  );
  services.alerts.send(alerts.storageFull(f.labels.vm, f.diskArrayId, f.name, f.def.name, err.storage, err.minFreePercent));
  await runRetention(ctx, f.def.id);
  return `${err.detail} (storage ${err.storage})`;
}
