/** Every view and task kind of the API, gathered in one place for the app builder. */
import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../app-context.js';
import type { ViewDef } from './view.js';
import { accountViews } from '../accounts/account.routes.js';
import { nodeViews } from '../nodes/node.routes.js';
import { vmViews, registerVmKinds } from '../vms/vm.routes.js';
import { registerPowerKinds } from '../vms/vm.power.js';
import { defineViews } from '../definitions/define.routes.js';
import { snapshotViews } from '../snapshots/snapshot.routes.js';
import { registerSnapshotKinds } from '../snapshots/snapshot.kinds.js';
import { runRetention } from '../scheduler/retention.js';
import { taskViews } from '../tasks/task.routes.js';
import { overviewViews } from '../overview/overview.routes.js';
import { backupDefineViews } from '../backups/bkpdef.routes.js';
import { backupViews } from '../backups/backup.routes.js';
import { registerBackupKinds } from '../backups/backup.kinds.js';
import { openapiRoute } from './openapi.js';
import type { Metrics } from '../metrics/metrics.js';
import { metricsRoute } from './metrics.route.js';
import { uiRoute } from './ui.js';
import { healthRoutes } from './health.routes.js';

export function allViews(): ViewDef[] {
  return [...accountViews, ...nodeViews, ...vmViews, ...defineViews, ...snapshotViews, ...taskViews, ...overviewViews, ...backupDefineViews, ...backupViews];
}

export function registerTaskKinds(ctx: AppContext): void {
  registerSnapshotKinds(ctx, runRetention);
  registerVmKinds(ctx);
  registerPowerKinds(ctx);
  registerBackupKinds(ctx);
}

export function extraRoutes(
  ctx: AppContext,
  opts: { metrics?: Metrics; metricsPublic?: boolean } = {},
): (app: FastifyInstance) => void {
  return (app) => {
    openapiRoute(app, ctx, allViews());
    // Unauthenticated probes for load balancers and orchestrators.
    healthRoutes(app, ctx);
    if (opts.metrics) metricsRoute(app, ctx, opts.metrics, { public: opts.metricsPublic ?? false });
    // Last: the web UI's static files at `/` (its wildcard never shadows /api).
    uiRoute(app);
  };
}
