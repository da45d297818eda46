/**
 * What the end of an automatic snapshot's task means for its definition and for monitoring
 * (spec 8.5): `last_success`/`last_error` are written in the completion transaction (so retention,
 * which runs right after a success, sees the run as succeeded), then the alerts go out: a failed
 * automatic create or delete, or a create whose filesystem freeze failed.
 */
import type { Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import type { CompletionEvent, CompletionListener, TaskResult } from '../tasks/task.types.js';
import type { CreateContext, DeleteContext } from '../snapshots/snapshot.service.js';
import { alerts } from '../alerts/alert.messages.js';
import type { AutomationServices } from './services.js';

/** `<define>-YYYYmmdd_HHMMSS` → `<define>` (automatic names are made by formatAutoSnapshotName). */
export function defineNameOf(snapname: string): string | null {
  const m = /^(.+)-\d{8}_\d{6}$/.exec(snapname);
  return m ? m[1]! : null;
}

function resultMessage(result: TaskResult | string): string {
  return typeof result === 'string' ? result : result.message;
}

function hostnameOf(e: CompletionEvent): string {
  try {
    const view = JSON.parse(e.task.apiview) as { hostname?: unknown };
    if (typeof view.hostname === 'string') return view.hostname;
  } catch {
    // fall through
  }
  return e.task.vm_uuid ?? '';
}

export function automationListener(services: AutomationServices): CompletionListener {
  return {
    async inTransaction(trx: Transaction<Database>, e: CompletionEvent): Promise<void> {
      if (e.task.kind !== 'snapshot_create') return;
      const c = JSON.parse(e.task.context) as CreateContext;
      if (c.defineId === null || c.defineId === undefined) return;
      const patch =
        e.state === 'SUCCESS'
          ? { last_success: e.task.finished ?? e.task.created, last_error: null }
          : { last_error: resultMessage(e.result) || e.state };
      await trx.updateTable('snapshot_define').set(patch).where('id', '=', c.defineId).execute();
    },

    committed(e: CompletionEvent): void {
      if (e.task.kind === 'snapshot_create') {
        const c = JSON.parse(e.task.context) as CreateContext;
        if (c.defineId === null || c.defineId === undefined) return;
        const host = hostnameOf(e);
        const define = defineNameOf(c.name);
        for (const diskId of c.diskArrayIds) {
          if (e.state !== 'SUCCESS') {
            services.observer.runFailed({ vm: host, disk: diskId, define: define ?? '' });
            services.alerts.send(alerts.createFailed(host, diskId, c.name, define));
          } else if (/filesystem freeze failed/.test(resultMessage(e.result))) {
            services.alerts.send(alerts.freezeFailed(host, diskId, c.name, define));
          }
        }
        return;
      }
      if (e.task.kind === 'snapshot_delete' && e.state !== 'SUCCESS') {
        const c = JSON.parse(e.task.context) as DeleteContext;
        if (!c.auto) return;
        const view = JSON.parse(e.task.apiview) as { snapname?: string; snapnames?: string[] };
        const names = view.snapnames ?? (view.snapname !== undefined ? [view.snapname] : []);
        const host = hostnameOf(e);
        for (const name of names) services.alerts.send(alerts.deleteFailed(host, c.diskArrayId, name, defineNameOf(name)));
      }
    },
  };
}
