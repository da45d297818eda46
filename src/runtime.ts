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
}

export interface Runtime {
  readonly ctx: AppContext;
  readonly app: FastifyInstance;
  readonly agent: Agent | null;
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
    const app = await buildApp(ctx, { views: allViews(), extra: extraRoutes(ctx), logger: opts.httpLogger ?? false });
    return {
      ctx,
      app,
      agent,
      printedKey,
      async close() {
        await app.close();
        await queue.stop();
        await db.destroy();
      },
    };
  } catch (err) {
    await db.destroy();
    throw err;
  }
}
