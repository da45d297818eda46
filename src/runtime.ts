/**
 * Wiring of one esnap server process: database, tasks, queue, the app and (optionally) the local
 * agent. `src/bin/esnap.ts` builds it from the configuration; tests build it directly.
 */
import { markBackupNode, storageRoots } from './backups/backup-node.js';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { AppContext, Clock, Logger } from './app-context.js';
import { systemClock } from './app-context.js';
import { openDatabase } from './db/dialect.js';
import { migrateToLatest } from './db/migrate.js';
import { bootstrap } from './accounts/bootstrap.js';
import { InProcessQueue } from './queue/in-process.queue.js';
import type { TaskQueue } from './queue/queue.js';
import type { TaskEvents } from './tasks/task.events.js';
import { ClusterTransport, DEFAULT_AGENT_DEADLINE_S, DEFAULT_NODE_SILENCE_S } from './cluster-runtime.js';
import { LocalTaskEvents } from './tasks/task.events.js';
import { TaskService } from './tasks/task.service.js';
import { buildApp } from './http/app.js';
import { allViews, registerTaskKinds, extraRoutes } from './http/routes.js';
import { Agent } from './agent/agent.js';
import { RunningTasks } from './agent/running-tasks.js';
import { closeHttp } from './http/app-stop.js';
import { nodeQueueName } from './queue/pgboss.queue.js';
import { createDriver, type StorageConfig } from './storage/drivers.js';
import type { StorageDriver } from './storage/driver.js';
import type { CommandRunner } from './storage/runner.js';
import { agentRunner } from './storage/agent-runner.js';
import { flagDamagedAtStart } from './vms/disk.damage.js';
import { registerNode, updateStorageUsage } from './nodes/node.repository.js';
import { startUsageRefresh } from './nodes/storage.usage.js';
import { localHeartbeat } from './nodes/node.heartbeat.js';
import { DEFAULT_MIN_FREE_PERCENT } from './snapshots/capacity.js';
import type { Ticker } from './lib/ticker.js';
import { resyncAfterRepair } from './snapshots/snapshot.sync.js';
import { startDiscardSweep } from './snapshots/snapshot.discard-sweep.js';
import { AlertSink } from './alerts/alert.sink.js';
import { Metrics } from './metrics/metrics.js';
import { Scheduler } from './scheduler/scheduler.js';
import { BackupScheduler } from './backups/backup.scheduler.js';
import { BackupMetrics } from './backups/backup.metrics.js';
import { RetryPool } from './scheduler/retry.js';
import { DEFAULT_SCHEDULE_RETRY_S } from './scheduler/services.js';
import { automationListener } from './scheduler/completion.js';
import { Housekeeping, DEFAULT_TASKLOG_DAYS } from './tasks/housekeeping.js';
import type { HypervisorConfig } from './config.js';
import { agentVirsh, driverExtras, startHypervisor, type HypervisorHandle } from './hypervisor/hypervisor.js';
import { applyInventory } from './hypervisor/libvirt.rows.js';

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
  /** The one command runner of the local agent and its drivers; by default one that logs each command at debug level. */
  readonly runner?: CommandRunner;
  /** Fastify's logger (pino; `esnap serve` passes the same one as `log`); none when omitted. */
  readonly httpLogger?: FastifyBaseLogger;
  /** PostgreSQL (cluster mode): a node task nobody took, or whose agent went silent, fails after this (ESNAP_AGENT_DEADLINE_S). */
  readonly agentDeadlineS?: number;
  /** PostgreSQL (cluster mode): heartbeat silence after which a node is unreachable (ESNAP_NODE_SILENCE_S). */
  readonly nodeSilenceS?: number;
  /** Run the scheduler loop in this process (default true). The Scheduler exists either way. */
  readonly scheduler?: boolean;
  /** How long a scheduled run or a prune waits for a held disk lock (ESNAP_SCHEDULE_RETRY_S). */
  readonly scheduleRetryS?: number;
  /** URL that receives alerts as JSON POSTs (ESNAP_ALERT_WEBHOOK). */
  readonly alertWebhook?: string | null;
  /** Serve /metrics without authentication (ESNAP_METRICS_PUBLIC). */
  readonly metricsPublic?: boolean;
  /** Longest time the local agent keeps a guest frozen (ESNAP_FREEZE_LIMIT_S, default 60). */
  readonly freezeLimitS?: number;
  /** Storage free-space floor for new snapshots, 0–100, 0 off (ESNAP_MIN_FREE_PERCENT; default 5). */
  readonly minFreePercent?: number;
  /** PEM certificate and key: the app speaks HTTPS (ESNAP_TLS_CERT / ESNAP_TLS_KEY). */
  readonly https?: { readonly cert: string; readonly key: string } | null;
  /** Finished tasks and task-log entries older than this many days are removed (ESNAP_TASKLOG_DAYS, default 90). */
  readonly taskLogDays?: number;
  /** The URL clients use (ESNAP_PUBLIC_URL); absolute links (task-log paging) are built from it. */
  readonly publicUrl?: string | null;
  /** Folder recording the local agent's storage commands, so a restart ends those a crash left (storage/agent-runner.ts). */
  readonly childRecordsDir?: string;
  /** Where a backup node keeps its restic repository passwords (ESNAP_DATA_DIR/backup-keys). */
  readonly backupKeysDir?: string;
  /** ESNAP_BACKUP_NODE of the local agent's node (default true: embedded mode backs up to its own storages). */
  readonly backupNode?: boolean;
  /** The local agent's hypervisor adapter (ESNAP_HYPERVISOR…); none when omitted. */
  readonly hypervisor?: HypervisorConfig;
}

export interface Runtime {
  readonly ctx: AppContext;
  readonly app: FastifyInstance;
  readonly agent: Agent | null;
  /** The local agent's libvirt adapter (ESNAP_HYPERVISOR=libvirt), else null. */
  readonly hypervisor: HypervisorHandle | null;
  /** Cluster mode's queue, wake-ups and server services (PostgreSQL); null on SQLite. */
  readonly cluster: ClusterTransport | null;
  readonly scheduler: Scheduler;
  /** Scheduled backups (backup definitions); started with the scheduler. */
  readonly backupScheduler: BackupScheduler;
  /** Removal of old finished tasks and task-log entries (started with the server). */
  readonly housekeeping: Housekeeping;
  readonly metrics: Metrics;
  readonly alerts: AlertSink;
  /** The bootstrap admin's API key when this start generated it (print it once). */
  readonly printedKey: string | null;
  /** Tasks the local agent is running (claimed, end not yet recorded). */
  runningTasks(): string[];
  /**
   * Stops taking work (HTTP requests answer 503, open ES-STREAMs end with the pending status, the
   * scheduler and the local agent's queue start nothing new), waits for the running tasks, then
   * closes the database. It has no time limit of its own: `esnap serve` gives it
   * ESNAP_STOP_GRACE_S and exits if it has not finished by then.
   */
  close(): Promise<void>;
}

export const silentLogger: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

export async function createRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? silentLogger;
  const opened = openDatabase(opts.databaseUrl, opts.searchPath ? { searchPath: opts.searchPath } : {});
  const db = opened.db;
  let cluster: ClusterTransport | null = null;
  try {
    await migrateToLatest(db, opened.schema ? { schema: opened.schema } : {});
    const { printedKey } = await bootstrap(db, clock, opts.adminApiKey);
    // PostgreSQL is cluster mode: node tasks go through pg-boss and completions reach every server
    // through NOTIFY. SQLite keeps the in-process queue and wake-ups.
    const silenceS = opts.nodeSilenceS ?? DEFAULT_NODE_SILENCE_S;
    if (opened.kind === 'postgres') cluster = await ClusterTransport.open(db, opts.databaseUrl, opened.schema, log);
    const queue: TaskQueue =
      cluster?.queue ?? new InProcessQueue({ onError: (err, msg) => log.error({ err, taskId: msg.taskId }, 'queue handler failed') });
    const events: TaskEvents = cluster?.events ?? new LocalTaskEvents();
    const tasks = new TaskService(db, queue, events, clock, log);
    const base = {
      db,
      clock,
      tasks,
      events,
      log,
      settings: { streamTimeoutS: opts.streamTimeoutS ?? 3600, localNode: opts.localAgent ? opts.node : null, publicUrl: opts.publicUrl ?? null },
    };
    const metrics = new Metrics(base, queue);
    const alerts = new AlertSink({ clock, log, webhook: opts.alertWebhook ?? null, observer: metrics });
    const automation = { alerts, observer: metrics, retries: new RetryPool(), retryS: opts.scheduleRetryS ?? DEFAULT_SCHEDULE_RETRY_S };
    // What automatic snapshots and the free-space floor need travels on the context itself.
    const ctx: AppContext = { ...base, automation, capacity: { minFreePercent: opts.minFreePercent ?? DEFAULT_MIN_FREE_PERCENT } };
    registerTaskKinds(ctx);
    tasks.addListener(automationListener(automation));
    tasks.addListener(metrics.listener());
    tasks.addListener(new BackupMetrics(ctx, metrics.registry).listener());
    const scheduler = new Scheduler(ctx, automation);
    const backupScheduler = new BackupScheduler(ctx, automation);
    let agent: Agent | null = null;
    let hypervisor: HypervisorHandle | null = null;
    const running = new RunningTasks();
    if (opts.localAgent) {
      const runner = opts.runner ?? (await agentRunner(opts.childRecordsDir, log));
      const extras = driverExtras(opts.hypervisor, runner);
      const drivers = new Map<string, StorageDriver>(opts.storages.map((s) => [s.name, createDriver(s, runner, extras)]));
      agent = new Agent(
        opts.node,
        drivers,
        queue,
        running.track({
          started: (id) => tasks.markStarted(id),
          finished: (id, outcome) => tasks.complete(id, outcome),
          storageUsage: (usage) => updateStorageUsage(db, opts.node, usage),
        }),
        log,
        {
          runner,
          ...(opts.freezeLimitS !== undefined ? { freezeLimitMs: opts.freezeLimitS * 1000 } : {}),
          libvirt: agentVirsh(opts.hypervisor, runner),
          // Embedded: the disks are on this node, type 1 goes through local pipes (no SSH).
          backup: { keysDir: opts.backupKeysDir ?? null, roots: storageRoots(opts.storages), storages: new Map(opts.storages.map((s) => [s.name, s])) },
        },
      );
      const local = agent;
      // A running task of this node is cancelled by the agent here; others through the cluster.
      tasks.setRunningCanceller(async (node, taskId) =>
        node === opts.node ? local.cancel(taskId) : cluster ? cluster.canceller.cancel(node, taskId) : 'unknown',
      );
      for (const d of drivers.values()) await d.init();
      const stats = await agent.storageStats();
      await registerNode(
        db,
        opts.node,
        opts.storages.map((s) => ({ ...s, size: stats.get(s.name)?.size ?? null, free: stats.get(s.name)?.free ?? null })),
        clock.now().toISOString(),
      );
      // The drivers have finished or undone what a crash cut off; an image still missing or cut
      // off is flagged before any task can snapshot it (src/vms/disk.damage.ts).
      await flagDamagedAtStart(db, opts.node, drivers, log);
      await markBackupNode(db, opts.node, opts.backupNode ?? true); // embedded: the local node backs up to its own storages
      // Crash repair before new work: tasks cut off by a crash fail with the failure cleanup, and
      // their disks are re-synced against storage so no row stays pending or rollback.
      const { failed } = await tasks.recover(opts.node);
      // Its queue, the jobs a killed predecessor held, and its heartbeat (cluster-runtime.ts).
      if (cluster) await cluster.prepareLocalAgent(ctx, opts.node, silenceS);
      await agent.start();
      await resyncAfterRepair(ctx, failed);
      const publish = async (inv: Parameters<typeof applyInventory>[1]): Promise<void> => void (await applyInventory(ctx, inv));
      hypervisor = await startHypervisor(opts.hypervisor, { node: opts.node, storages: opts.storages, drivers, runner, log, publish });
    }
    if (!agent && cluster) {
      const c = cluster;
      tasks.setRunningCanceller((node, taskId) => c.canceller.cancel(node, taskId));
    }
    // Every server consumes registrations, heartbeats and results, and runs the deadline sweep.
    if (cluster) {
      await cluster.startServices(ctx, { agentDeadlineS: opts.agentDeadlineS ?? DEFAULT_AGENT_DEADLINE_S, nodeSilenceS: silenceS });
    }
    const app = await buildApp(ctx, {
      views: allViews(),
      extra: extraRoutes(ctx, { metrics, metricsPublic: opts.metricsPublic ?? false }),
      ...(opts.httpLogger ? { logger: opts.httpLogger } : {}),
      ...(opts.https ? { https: opts.https } : {}),
    });
    const housekeeping = new Housekeeping(ctx, { retentionDays: opts.taskLogDays ?? DEFAULT_TASKLOG_DAYS });
    // After crash repair, so the first tick (the catch-up of missed slots) sees a clean state.
    if (opts.scheduler ?? true) {
      scheduler.start();
      backupScheduler.start();
    }
    // The local agent's periodic usage report (src/nodes/storage.usage.ts); started last, as nothing fails after it.
    const usageRefresh: Ticker | null = agent ? startUsageRefresh(agent, log) : null;
    // Embedded mode's local node beats too (cluster mode's does in prepareLocalAgent): its
    // last_heartbeat would otherwise stay at the start time, and the UI show it long silent.
    const embeddedHeartbeat: Ticker | null = agent && !cluster ? localHeartbeat(ctx, opts.node, silenceS) : null;
    housekeeping.start();
    // What failed creates may have left on disks no sync has reached yet (src/snapshots/snapshot.discard.ts).
    const discardSweep = startDiscardSweep(ctx);
    return {
      ctx,
      app,
      agent,
      hypervisor,
      cluster,
      scheduler,
      backupScheduler,
      housekeeping,
      metrics,
      alerts,
      printedKey,
      runningTasks: () => running.ids(),
      async close() {
        // Stop taking work first, all at once: the local agent takes no new task (those still
        // queued stay PENDING and are sent again at the next start), the scheduler starts no run,
        // HTTP answers 503 and open streams end. In cluster mode only the local agent's consumer
        // stops here: heartbeats and the result consumers go on while its tasks drain.
        const drained = cluster ? (agent ? cluster.queue.stopConsumer(nodeQueueName(opts.node)) : Promise.resolve()) : queue.stop();
        const schedulerStopped = Promise.all([scheduler.stop(), backupScheduler.stop()]);
        await hypervisor?.stop();
        await closeHttp(app, ctx);
        await schedulerStopped;
        await usageRefresh?.stop();
        await embeddedHeartbeat?.stop();
        await housekeeping.stop();
        await discardSweep.stop();
        // The running tasks finish and their ends are recorded.
        await drained;
        // The cluster transport stops its loops, then the queue, then LISTEN.
        if (cluster) await cluster.close();
        else await queue.stop();
        // Completions drained by the queue's stop may have started prune waits: end them too.
        await automation.retries.stop();
        await alerts.stop();
        await db.destroy();
      },
    };
  } catch (err) {
    await cluster?.close().catch(() => undefined);
    await db.destroy();
    throw err;
  }
}
