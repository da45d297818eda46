/**
 * The scheduler as a background loop: it wakes at minute boundaries on the injected clock,
 * start() and stop() are symmetric, stop() waits for work in flight, ticks never overlap, and a
 * failing tick is logged and counted without ending the loop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kysely, SqliteDialect } from 'kysely';
import SQLite from 'better-sqlite3';
import type { AppContext } from '../../src/app-context.js';
import type { Database } from '../../src/db/schema.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { RetryPool } from '../../src/scheduler/retry.js';
import { AlertSink } from '../../src/alerts/alert.sink.js';
import { noopObserver, type AutomationServices, type SchedulerObserver } from '../../src/scheduler/services.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { ManualClock, recordingLogger } from './helpers.js';

function services(ctx: AppContext, observer: SchedulerObserver = noopObserver): AutomationServices {
  return { alerts: new AlertSink({ clock: ctx.clock, log: ctx.log }), observer, retries: new RetryPool(), retryS: 300 };
}

async function until(f: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('scheduler loop', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer('sqlite');
  });
  afterAll(() => s.cleanup());

  it('ticks at start, then sleeps until the next minute boundary; stop() ends it and start() resumes', async () => {
    const clock = new ManualClock('2026-09-01T10:00:20Z');
    const ticks: number[] = [];
    const ctx: AppContext = { ...s.runtime.ctx, clock };
    const sch = new Scheduler(ctx, services(ctx, { ...noopObserver, tickDone: () => ticks.push(clock.now().getTime()) }));
    sch.start();
    expect(sch.running).toBe(true);
    await until(() => ticks.length === 1 && clock.sleeping === 1);
    expect(clock.nextWake).toBe(40_000 + 5);
    clock.advance(40_005);
    await until(() => ticks.length === 2 && clock.sleeping === 1);
    expect(new Date(ticks[1]!).toISOString()).toBe('2026-09-01T10:01:00.005Z');
    expect(clock.nextWake).toBe(60_000);

    await sch.stop();
    expect(sch.running).toBe(false);
    expect(clock.sleeping).toBe(0);
    clock.advance(120_000);
    await new Promise((r) => setTimeout(r, 20));
    expect(ticks).toHaveLength(2);

    sch.start();
    await until(() => ticks.length === 3 && clock.sleeping === 1);
    await sch.stop();
    await sch.stop(); // idempotent
  });

  it('never overlaps ticks: one asked for during another runs after it', async () => {
    const events: string[] = [];
    const base = new ManualClock('2026-09-01T11:00:00Z');
    const probe = { now: () => (events.push('start'), base.now()) };
    const ctx: AppContext = { ...s.runtime.ctx, clock: probe };
    const sch = new Scheduler(ctx, services(ctx, { ...noopObserver, tickDone: () => events.push('end') }));
    await Promise.all([sch.tick(), sch.tick(), sch.tick()]);
    expect(events).toEqual(['start', 'end', 'start', 'end', 'start', 'end']);
  });

  it('logs and counts a failing tick, and keeps going', async () => {
    const broken = new Kysely<Database>({ dialect: new SqliteDialect({ database: new SQLite(':memory:') }) });
    const clock = new ManualClock('2026-09-01T12:00:30Z');
    const log = recordingLogger();
    let failed = 0;
    const ctx: AppContext = { ...s.runtime.ctx, db: broken, clock, log };
    const sch = new Scheduler(ctx, services(ctx, { ...noopObserver, tickFailed: () => failed++ }));
    await expect(sch.tick()).rejects.toThrow(/no such table/);
    sch.start();
    await until(() => clock.sleeping === 1);
    expect(failed).toBeGreaterThanOrEqual(1);
    expect(log.messages('error')).toContain('scheduler tick failed');
    const before = failed;
    clock.advance(clock.nextWake!);
    await until(() => failed > before && clock.sleeping === 1);
    await sch.stop();
    await broken.destroy();
  });

  it('stop() waits for the tick in flight', async () => {
    const clock = new ManualClock('2026-09-01T13:00:00Z');
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let finished = false;
    // Every query of this scheduler waits at the gate: its first tick is in flight until released.
    const slowDb = s.runtime.ctx.db.withPlugin({
      transformQuery: (a) => a.node,
      transformResult: async (a) => {
        await gate;
        return a.result;
      },
    });
    const ctx: AppContext = { ...s.runtime.ctx, db: slowDb, clock };
    const sch = new Scheduler(ctx, services(ctx, { ...noopObserver, tickDone: () => (finished = true) }));
    sch.start();
    await new Promise((r) => setTimeout(r, 20));
    let stopped = false;
    const stopping = sch.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(finished).toBe(true);
  });
});
