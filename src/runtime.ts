/**
 * Wiring of one esnap server process: database, tasks, queue, the app and (optionally) the local
 * agent. `src/bin/esnap.ts` builds it from the configuration; tests build it directly.
 */
import type { FastifyInstance } from 'fastify';
import type { AppContext, Clock, Logger } from './app-context.js';
import { systemClock } from './app-context.js';
import { openDatabase } from './db/dialect.js';
import { migrateToLatest } from './db/migrate.js';
import { bootstrap } from './accounts/bootstrap.js';
import { InProcessQueue } from './queue/in-process.queue.js';
import { LocalTaskEvents } from './tasks/task.events.js';
import { TaskService } from './tasks/task.service.js';
import { buildApp } from './http/app.js';
import { allViews, registerTaskKinds, extraRoutes } from './http/routes.js';
import { Agent } from './agent/agent.js';
import { createDriver, type StorageConfig } from './storage/drivers.js';
import type { StorageDriver } from './storage/driver.js';
import type { CommandRunner } from './storage/runner.js';
import { NodeCommandRunner } from './storage/node-runner.js';
import { registerNode } from './nodes/node.repository.js';
import { resyncAfterRepair } from './snapshots/snapshot.sync.js';
import { AlertSink } from './alerts/alert.sink.js';
import { Metrics } from './metrics/metrics.js';
import { Scheduler } from './scheduler/scheduler.js';
import { RetryPool } from './scheduler/retry.js';
import { attachAutomation, DEFAULT_SCHEDULE_RETRY_S } from './scheduler/services.js';
import { automationListener } from './scheduler/completion.js';

export interface RuntimeOptions {
  readonly databaseUrl: string;
  /** PostgreSQL schema to use (tests). */
  readonly searchPath?: string;
  readonly adminApiKey: string | null;
  readonly node: string;
  readonly storages: readonly StorageConfig[];
  readonly localAgent: boolean;
  readonly streamTimeoutS?: number;
  readonly clock?: Clock;
  readonly log?: Logger;
  readonly runner?: CommandRunner;
  readonly httpLogger?: boolean;
  /** Run the scheduler loop in this process (default true). The Scheduler exists either way. */
  readonly scheduler?: boolean;
  /** How long a scheduled run or a prune waits for a held disk lock (ESNAP_SCHEDULE_RETRY_S). */
  readonly scheduleRetryS?: number;
  /** URL that receives alerts as JSON POSTs (ESNAP_ALERT_WEBHOOK). */
  readonly alertWebhook?: string | null;
  /** Serve /metrics without authentication (ESNAP_METRICS_PUBLIC). */
  readonly metricsPublic?: boolean;
}

export interface Runtime {
  readonly ctx: AppContext;
  readonly app: FastifyInstance;
  readonly agent: Agent | null;
  readonly scheduler: Scheduler;
  readonly metrics: Metrics;
  readonly alerts: AlertSink;
  /** The bootstrap admin's API key when this start generated it (print it once). */
  readonly printedKey: string | null;
  close(): Promise<void>;
}

export const silentLogger: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined };

export async function createRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? silentLogger;
  const opened = openDatabase(opts.databaseUrl, opts.searchPath ? { searchPath: opts.searchPath } : {});
  const db = opened.db;
  try {
    await migrateToLatest(db, opened.schema ? { schema: opened.schema } : {});
    const { printedKey } = await bootstrap(db, clock, opts.adminApiKey);
    const queue = new InProcessQueue({ onError: (err, msg) => log.error({ err, taskId: msg.taskId }, 'queue handler failed') });
    const events = new LocalTaskEvents();
    const tasks = new TaskService(db, queue, events, clock, log);
    const ctx: AppContext = {
      db,
      dbKind: opened.kind,
      clock,
      tasks,
      events,
      log,
      settings: { streamTimeoutS: opts.streamTimeoutS ?? 3600, localNode: opts.localAgent ? opts.node : null },
    };
    registerTaskKinds(ctx);
    const metrics = new Metrics(ctx, queue);
    const alerts = new AlertSink({ clock, log, webhook: opts.alertWebhook ?? null, observer: metrics });
    const automation = { alerts, observer: metrics, retries: new RetryPool(), retryS: opts.scheduleRetryS ?? DEFAULT_SCHEDULE_RETRY_S };
    attachAutomation(ctx, automation);
    tasks.addListener(automationListener(automation));
    tasks.addListener(metrics.listener());
    const scheduler = new Scheduler(ctx, automation);
    let agent: Agent | null = null;
    if (opts.localAgent) {
      const runner = opts.runner ?? new NodeCommandRunner();
      const drivers = new Map<string, StorageDriver>(opts.storages.map((s) => [s.name, createDriver(s, runner)]));
      agent = new Agent(
        opts.node,
        drivers,
        queue,
        { started: (id) => tasks.markStarted(id), finished: (id, outcome) => tasks.complete(id, outcome) },
        log,
      );
      for (const d of drivers.values()) await d.init();
      const stats = await agent.storageStats();
      await registerNode(
        db,
        opts.node,
        opts.storages.map((s) => ({ ...s, size: stats.get(s.name)?.size ?? null, free: stats.get(s.name)?.free ?? null })),
        clock.now().toISOString(),
      );
      // Crash repair before new work: tasks cut off by a crash fail with the failure cleanup, and
      // their disks are re-synced against storage so no row stays pending or rollback.
      const { failed } = await tasks.recover(opts.node);
      await agent.start();
      await resyncAfterRepair(ctx, failed);
    }
    const app = await buildApp(ctx, {
      views: allViews(),
      extra: extraRoutes(ctx, { metrics, metricsPublic: opts.metricsPublic ?? false }),
      logger: opts.httpLogger ?? false,
    });
    // After crash repair, so the first tick (the catch-up of missed slots) sees a clean state.
    if (opts.scheduler ?? true) scheduler.start();
    return {
      ctx,
      app,
      agent,
      scheduler,
      metrics,
      alerts,
      printedKey,
      async close() {
        // The scheduler first: no new runs while the rest shuts down.
        await scheduler.stop();
        await app.close();
        await queue.stop();
        // Completions drained by the queue's stop may have started prune waits: end them too.
        await automation.retries.stop();
        await alerts.stop();
        await db.destroy();
      },
    };
  } catch (err) {
    await db.destroy();
    throw err;
  }
}
