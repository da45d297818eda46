/**
 * Housekeeping on a real database: a year of synthetic task history (100 tasks a day with their
 * task-log entries, plus synchronous log entries, old open tasks, a task still named by a lock and
 * a long task), pruned with the clock at the end of that year.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { forEachDb, testDatabases, withServer, type TestServer } from '../helpers/server.js';
import type { Clock } from '../../src/app-context.js';
import type { Database } from '../../src/db/schema.js';
import { makeDummyTaskId, makeTaskId } from '../../src/domain/taskid.js';
import { Housekeeping } from '../../src/tasks/housekeeping.js';
import { ConfigError, loadConfig } from '../../src/config.js';

const DAY = 24 * 3600 * 1000;
const END = Date.parse('2026-12-31T12:00:00.000Z');
const CUTOFF = new Date(END - 90 * DAY).toISOString();

type Db = Kysely<Database>;
type Task = Database['task'] & { id: string };
type Log = Omit<Database['task_log'], 'id'>;

interface History {
  tasks: Task[];
  logs: Log[];
}

const iso = (ms: number): string => new Date(ms).toISOString();

function task(created: number, finished: number | null, state: string, opts: { type?: 'e' | 'a' } = {}): Task {
  const type = opts.type ?? 'e';
  const id = makeTaskId({ userId: type === 'a' ? 7 : 1, type, ownerId: 1, dcBound: true, dcId: 1 }, randomUUID());
  return {
    id,
    type,
    kind: 'snapshot_create',
    define_id: null,
    open_xid: null,
    user_id: 1,
    owner_id: 1,
    dc_id: 1,
    vm_uuid: null,
    node_id: null,
    payload: JSON.stringify({ disk: { path: '/var/lib/esnap/storage/web01-disk0', driver: 'file' }, id: 'es-1234', name: 'daily-20260101_000000' }),
    context: JSON.stringify({ snapshotId: 1234, defineId: 7, name: 'daily-20260101_000000' }),
    node: null,
    apiview: JSON.stringify({ view: 'vm_snapshot', method: 'POST', hostname: 'web01', disk_id: 1, snapname: 'daily', time: iso(created) }),
    state,
    result: finished === null ? null : JSON.stringify({ returncode: state === 'SUCCESS' ? 0 : 1, message: 'Snapshot successfully created' }),
    log_msg: 'Create snapshot',
    log_detail: "hostname='web01', snapname='daily', disk_id=1",
    created: iso(created),
    started: finished === null && state === 'PENDING' ? null : iso(created + 1000),
    finished: finished === null ? null : iso(finished),
  };
}

function logOf(t: Task, status = t.state === 'STARTED' ? 'PENDING' : t.state): Log {
  return {
    // Completion rewrites the entry's time to the finish time.
    time: t.finished ?? t.created,
    task_id: t.id,
    task_type: t.type,
    status,
    user_id: 1,
    username: 'admin',
    owner_id: 1,
    dc_id: 1,
    msg: 'Create snapshot',
    detail: t.log_detail,
    object_type: 'vm',
    object_name: 'web01',
    object_alias: 'web01',
    object_pk: '00000000-0000-4000-8000-000000000001',
    flag: 1,
  };
}

/** `days` days of finished tasks ending at `end`, `perDay` a day, each with its log entry, plus 5 synchronous entries a day. */
function history(end: number, days: number, perDay: number): History {
  const tasks: Task[] = [];
  const logs: Log[] = [];
  for (let d = days; d >= 1; d--) {
    const dayStart = end - d * DAY;
    for (let i = 0; i < perDay; i++) {
      const created = dayStart + Math.floor((i * DAY) / perDay);
      const state = i % 10 === 0 ? 'FAILURE' : i % 25 === 1 ? 'REVOKED' : 'SUCCESS';
      const t = task(created, created + 30_000, state, { type: i % 2 === 0 ? 'a' : 'e' });
      tasks.push(t);
      logs.push(logOf(t));
    }
    for (let i = 0; i < 5; i++) {
      const time = iso(dayStart + i * 3600_000);
      const id = makeDummyTaskId({ userId: 1, ownerId: 1, dcBound: true, dcId: 1 }, randomUUID());
      logs.push({ ...logOf(task(dayStart, dayStart, 'SUCCESS')), task_id: id, task_type: 'd', time, msg: 'Update VM', flag: 3 });
    }
  }
  return { tasks, logs };
}

/** Bulk insert in one transaction, 1,000 rows a statement. */
async function insert(db: Db, h: History): Promise<void> {
  await db.transaction().execute(async (trx) => {
    for (let i = 0; i < h.tasks.length; i += 1000) await trx.insertInto('task').values(h.tasks.slice(i, i + 1000)).execute();
    for (let i = 0; i < h.logs.length; i += 1000) await trx.insertInto('task_log').values(h.logs.slice(i, i + 1000)).execute();
  });
}

const count = async (db: Db, table: 'task' | 'task_log'): Promise<number> =>
  Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);

const fullBatches = (n: number, size = 500): number => Math.floor(n / size) + 1;

forEachDb('housekeeping', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let db: Db;
  const year = history(END, 365, 100);
  // Old tasks that have not ended: never removed, however old, and their PENDING log entries stay.
  const open = [
    ...[0, 1, 2].map(() => task(END - 300 * DAY, null, 'PENDING')),
    ...[0, 1].map(() => task(END - 200 * DAY, null, 'STARTED')),
  ];
  // Finished long ago but still named by a lock: skipped.
  const locked = task(END - 200 * DAY, END - 200 * DAY + 1000, 'SUCCESS');
  // Created before the cutoff, finished after it: its age is counted from the finish.
  const long = task(END - 100 * DAY, END - 80 * DAY, 'SUCCESS');
  const extra = [...open, locked, long];

  beforeAll(async () => {
    const clock: Clock = { now: () => new Date(END) };
    s = await withServer(kind, { clock });
    db = s.runtime.ctx.db;
    // The server's start-up pass has nothing to do; wait for it so it cannot race the inserts.
    await s.runtime.housekeeping.run();
    await insert(db, { tasks: [...year.tasks, ...extra], logs: [...year.logs, ...extra.map((t) => logOf(t))] });
    await db.insertInto('task_lock').values({ key: `vm_snapshot vm:x disk:1`, task_id: locked.id, created: locked.created }).execute();
  });
  afterAll(async () => s?.cleanup());

  it('removes only finished tasks and final log entries older than the retention, in batches', async () => {
    const logsBefore = await count(db, 'task_log');
    const tasksBefore = await count(db, 'task');
    const goneTasks = year.tasks.filter((t) => t.finished! < CUTOFF);
    const goneLogs = [...year.logs, logOf(locked)].filter((l) => l.time < CUTOFF);
    expect(goneTasks.length).toBeGreaterThan(25_000);

    const report = await s.runtime.housekeeping.run();
    expect(report).toEqual({
      cutoff: CUTOFF,
      tasks: goneTasks.length,
      logs: goneLogs.length,
      // Every full batch of 500 is followed by another statement; the last one comes back short.
      batches: fullBatches(goneTasks.length) + fullBatches(goneLogs.length),
      interrupted: false,
    });
    expect(await count(db, 'task')).toBe(tasksBefore - goneTasks.length);
    expect(await count(db, 'task_log')).toBe(logsBefore - goneLogs.length);

    const rows = await db.selectFrom('task').select(['id', 'state', 'finished']).execute();
    const kept = new Set(rows.map((r) => r.id));
    for (const t of [...open, locked, long]) expect(kept.has(t.id)).toBe(true);
    for (const r of rows) if (r.state !== 'PENDING' && r.state !== 'STARTED' && r.id !== locked.id) expect(r.finished! >= CUTOFF).toBe(true);
    expect(goneTasks.some((t) => kept.has(t.id))).toBe(false);
    const oldLogs = await db.selectFrom('task_log').select(['task_id', 'status']).where('time', '<', CUTOFF).execute();
    expect(oldLogs.map((l) => l.task_id).sort()).toEqual(open.map((t) => t.id).sort());
    expect(new Set(oldLogs.map((l) => l.status))).toEqual(new Set(['PENDING']));

    // A second pass finds nothing: one short statement per table.
    expect(await s.runtime.housekeeping.run()).toMatchObject({ tasks: 0, logs: 0, batches: 2 });
  });

  it('leaves the task API working on what is kept', async () => {
    const page = await s.req('GET', '/api/task/log/', { query: { page: '1' } });
    expect(page.status).toBe(200);
    expect(page.body.count).toBe(await count(db, 'task_log'));
    // Only the open tasks' entries are older than the cutoff (date_to is inclusive).
    const old = await s.req('GET', '/api/task/log/', { query: { page: '1', date_to: iso(Date.parse(CUTOFF) - 1) } });
    expect(old.body.count).toBe(open.length);
    expect(old.body.results.map((e: { task: string }) => e.task).sort()).toEqual(open.map((t) => t.id).sort());
    const last = await s.req('GET', '/api/task/log/', { query: { page: String(Math.ceil(page.body.count / 100)) } });
    expect(last.status).toBe(200);
    expect((await s.req('GET', '/api/task/')).body.sort()).toEqual(open.map((t) => t.id).sort());
    const gone = year.tasks[0]!;
    const removed = await s.req('GET', `/api/task/${gone.id}/status/`);
    expect(removed.status).toBe(404);
    expect(removed.body.detail).toBe('Task does not exist (anymore)');
    const recent = year.tasks.at(-1)!;
    expect((await s.req('GET', `/api/task/${recent.id}/status/`)).body.status).toBe(recent.state);
    expect((await s.req('GET', `/api/task/${long.id}/status/`)).body.status).toBe('SUCCESS');
  });

  it('is harmless when several servers prune at the same moment', async () => {
    const more = history(END - 100 * DAY, 20, 100);
    await insert(db, more);
    const tasksBefore = await count(db, 'task');
    const logsBefore = await count(db, 'task_log');
    const a = new Housekeeping(s.runtime.ctx, { retentionDays: 90, batchSize: 100, pauseMs: 0 });
    const b = new Housekeeping(s.runtime.ctx, { retentionDays: 90, batchSize: 100, pauseMs: 0 });
    const [ra, rb] = await Promise.all([a.run(), b.run()]);
    expect(ra.tasks + rb.tasks).toBe(more.tasks.length);
    expect(ra.logs + rb.logs).toBe(more.logs.length);
    expect(await count(db, 'task')).toBe(tasksBefore - more.tasks.length);
    expect(await count(db, 'task_log')).toBe(logsBefore - more.logs.length);
    // Whatever one of them left (rows the other held), a later pass finds nothing left.
    expect(await a.run()).toMatchObject({ tasks: 0, logs: 0 });
  });

  it('stop() ends a pass after its current batch; start() runs a pass at once', async () => {
    const more = history(END - 100 * DAY, 10, 100);
    await insert(db, more);
    const hk = new Housekeeping(s.runtime.ctx, { retentionDays: 90, batchSize: 100 });
    hk.start();
    await hk.stop();
    expect(hk.runs).toBe(1);
    expect(hk.errors).toBe(0);
    expect(hk.last).toMatchObject({ tasks: 100, logs: 0, batches: 1, interrupted: true });
    hk.start();
    await hk.stop();
    expect(hk.runs).toBe(2);
    expect(await s.runtime.housekeeping.run()).toMatchObject({ tasks: more.tasks.length - 200, logs: more.logs.length });
  });

  it('counts and logs a failed pass without ending the loop', async () => {
    const lines: unknown[] = [];
    const ctx = { ...s.runtime.ctx, log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: (o: unknown) => lines.push(o) }, clock: { now: () => new Date(NaN) } };
    const hk = new Housekeeping(ctx, { retentionDays: 90 });
    hk.start();
    await hk.stop();
    expect(hk.errors).toBe(1);
    expect(hk.runs).toBe(0);
    expect(lines).toHaveLength(1);
  });
});

describe.runIf(testDatabases().includes('sqlite'))('housekeeping: steady state [sqlite]', () => {
  it('the database stops growing once the history reaches the retention window', async () => {
    let now = Date.parse('2026-01-01T00:00:00.000Z');
    const s = await withServer('sqlite', { clock: { now: () => new Date(now) } });
    try {
      const db = s.runtime.ctx.db;
      await s.runtime.housekeeping.run();
      const pages: Array<{ month: number; pages: number; used: number; tasks: number }> = [];
      const pragma = async (name: string): Promise<number> => Number(Object.values((await sql.raw(`PRAGMA ${name}`).execute(db)).rows[0] as object)[0]);
      for (let month = 1; month <= 10; month++) {
        now += 30 * DAY;
        await insert(db, history(now, 30, 60));
        await s.runtime.housekeeping.run();
        const pageCount = await pragma('page_count');
        pages.push({ month, pages: pageCount, used: pageCount - (await pragma('freelist_count')), tasks: await count(db, 'task') });
      }
      // Three months of history are kept from the third month on (90 days, 30-day months).
      expect(pages.slice(2).every((p) => p.tasks === 90 * 60)).toBe(true);
      const at = (m: number) => pages[m - 1]!;
      // Before the window is reached the file grows with the history...
      expect(at(3).pages).toBeGreaterThan(at(1).pages * 2);
      // ...after it, freed pages are reused: months 4-10 add (almost) nothing.
      for (const p of pages.slice(4)) {
        expect(p.pages).toBeLessThanOrEqual(Math.ceil(at(4).pages * 1.05));
        expect(p.used).toBeLessThanOrEqual(Math.ceil(at(4).pages * 1.05));
      }
      console.log('housekeeping steady state (SQLite pages per month):', pages.map((p) => `${p.month}:${p.pages}/${p.used}`).join(' '));
    } finally {
      await s.cleanup();
    }
  });
});

describe('ESNAP_TASKLOG_DAYS', () => {
  it('defaults to 90 and takes a positive whole number', () => {
    expect(loadConfig({}).taskLogDays).toBe(90);
    expect(loadConfig({ ESNAP_TASKLOG_DAYS: '30' }).taskLogDays).toBe(30);
    for (const bad of ['0', '-5', '1.5', 'abc', '1e3', ' ']) {
      expect(() => loadConfig({ ESNAP_TASKLOG_DAYS: bad })).toThrow(ConfigError);
    }
    expect(() => loadConfig({ ESNAP_TASKLOG_DAYS: '0' })).toThrow(/ESNAP_TASKLOG_DAYS must be a positive whole number/);
  });
});
