/**
 * What the scheduler tests share: a manual clock (time moves only when the test says so, and
 * sleeps on it end when it gets there), a logger that keeps what it is told, and waits for the
 * work a tick starts.
 */
import type { Logger } from '../../src/app-context.js';
import type { SleepingClock } from '../../src/lib/clock.js';
import type { TestServer } from '../helpers/server.js';

interface Sleeper {
  until: number;
  resolve: () => void;
}

export class ManualClock implements SleepingClock {
  #now: number;
  #sleepers: Sleeper[] = [];

  constructor(start: string | Date) {
    this.#now = new Date(start).getTime();
  }

  now(): Date {
    return new Date(this.#now);
  }

  /** Moves the clock to `t` (never backwards) and wakes every sleep that has ended. */
  set(t: string | Date): void {
    this.#now = Math.max(this.#now, new Date(t).getTime());
    const due = this.#sleepers.filter((s) => s.until <= this.#now);
    this.#sleepers = this.#sleepers.filter((s) => s.until > this.#now);
    for (const s of due) s.resolve();
  }

  advance(ms: number): void {
    this.set(new Date(this.#now + ms));
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const s: Sleeper = {
        until: this.#now + ms,
        resolve: () => {
          signal?.removeEventListener('abort', abort);
          resolve();
        },
      };
      const abort = (): void => {
        this.#sleepers = this.#sleepers.filter((x) => x !== s);
        resolve();
      };
      signal?.addEventListener('abort', abort, { once: true });
      this.#sleepers.push(s);
    });
  }

  get sleeping(): number {
    return this.#sleepers.length;
  }

  /** Time until the earliest sleep ends, or null. */
  get nextWake(): number | null {
    if (this.#sleepers.length === 0) return null;
    return Math.min(...this.#sleepers.map((s) => s.until)) - this.#now;
  }

  /** Waits (in real time, briefly) until at least `n` sleeps are pending on this clock. */
  async untilSleeping(n = 1, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.#sleepers.length < n) {
      if (Date.now() > end) throw new Error(`no sleeper after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: unknown;
  msg: string | undefined;
}

export function recordingLogger(): Logger & { lines: LogLine[]; messages(level?: LogLine['level']): string[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    debug: (obj, msg) => lines.push({ level: 'debug', obj, msg }),
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
    messages: (level) => lines.filter((l) => level === undefined || l.level === level).map((l) => l.msg ?? ''),
  };
}

/**
 * Waits in real time until no task is pending or running and the local agent has no task in hand,
 * several polls in a row. A completion's follow-up, the retention prune, is submitted just after
 * the create's task has ended in the database, but before the agent's report of that task returns
 * (TaskService.complete awaits it): the agent's running tasks cover that gap, however slow the
 * machine.
 */
export async function settle(s: TestServer, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let quiet = 0;
  while (quiet < 4) {
    const pending = await s.runtime.ctx.db.selectFrom('task').select('id').where('state', 'in', ['PENDING', 'STARTED']).execute();
    const busy = [...pending.map((b) => b.id), ...s.runtime.runningTasks()];
    quiet = busy.length === 0 ? quiet + 1 : 0;
    if (Date.now() > end) throw new Error(`tasks did not settle: ${[...new Set(busy)].join(', ')}`);
    await new Promise((r) => setTimeout(r, busy.length === 0 ? 15 : 5));
  }
}

/** The automatic snapshots of a VM, oldest first. */
export async function autoSnapshots(s: TestServer, vmUuid: string) {
  return s.runtime.ctx.db
    .selectFrom('snapshot')
    .select(['id', 'name', 'type', 'status', 'define_id', 'fsfreeze', 'pinned', 'created', 'disk_real_id'])
    .where('vm_uuid', '=', vmUuid)
    .where('type', '=', 1)
    .orderBy('id')
    .execute();
}

export async function defineByName(s: TestServer, vmUuid: string, name: string) {
  return s.runtime.ctx.db.selectFrom('snapshot_define').selectAll().where('vm_uuid', '=', vmUuid).where('name', '=', name).executeTakeFirstOrThrow();
}

/** Creates a definition over the API (201 expected) and returns its row. */
export async function define(s: TestServer, vm: string, vmUuid: string, name: string, body: Record<string, unknown>) {
  const r = await s.req('POST', `/api/vm/${vm}/define/snapshot/${name}/`, { body });
  if (r.status !== 201) throw new Error(`define ${name}: ${r.status} ${r.text}`);
  return defineByName(s, vmUuid, name);
}
