/**
 * TaskService.submitMany: many tasks in one transaction. A task whose lock is held (before or
 * by an earlier task of the batch), whose `prepare` throws, or whose statement fails in the
 * database (which on PostgreSQL aborts a transaction without a savepoint) is undone alone and
 * answers what `submit` would; the others commit; messages go to the queue only after the commit.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Transaction } from 'kysely';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { idleNodeTaskService, testTaskSpec } from '../helpers/task-fixtures.js';
import { SYSTEM_USER_ID, SYSTEM_USERNAME } from '../../src/app-context.js';
import type { Database } from '../../src/db/schema.js';
import { FailureError, LOCK_FAILED } from '../../src/domain/errors.js';
import { InProcessQueue } from '../../src/queue/in-process.queue.js';
import { writeLog, type LogEntry } from '../../src/tasks/task-log.js';
import type { TaskService } from '../../src/tasks/task.service.js';
import type { SubmitResult, TaskSpec } from '../../src/tasks/task.types.js';

/** A node without an agent: what is sent stays in its queue, where the test can count it. */
const NODE = 'submit-many-nowhere';

forEachDb('TaskService.submitMany', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let queue: InProcessQueue;
  let tasks: TaskService;
  let nodeId: number;

  beforeAll(async () => {
    s = await withServer(kind, { localAgent: false });
    queue = new InProcessQueue();
    ({ tasks, nodeId } = await idleNodeTaskService(s, NODE, queue));
    tasks.registerKind('test_noop', { complete: async () => ({ result: { returncode: 0, message: 'ok' } }) });
  });
  afterAll(async () => s.cleanup());

  function spec(label: string, lock: string, prepare?: (trx: Transaction<Database>, taskId: string) => Promise<void>): TaskSpec<unknown> {
    return testTaskSpec('test_noop', { id: nodeId, hostname: NODE }, label, [lock], async (trx, taskId) => {
      await prepare?.(trx, taskId);
      return { payload: { label }, context: {} };
    });
  }

  /** A row that `prepare` writes before it fails: it must not survive. */
  function preparedEntry(label: string, taskId: string): LogEntry {
    const object = { type: 'vm', name: label, alias: label, pk: label };
    return { time: new Date().toISOString(), taskId, taskType: 'a', status: 'PENDING', userId: SYSTEM_USER_ID, username: SYSTEM_USERNAME, ownerId: 1, dcId: 1, msg: 'Test', detail: `label=${label}-prepared`, object };
  }

  async function rowsOf(prefix: string) {
    const db = s.runtime.ctx.db;
    const all = await db.selectFrom('task').select(['id', 'apiview']).where('kind', '=', 'test_noop').execute();
    const labels = all.map((t) => (JSON.parse(t.apiview) as { label: string }).label).filter((l) => l.startsWith(prefix));
    const locks = (await db.selectFrom('task_lock').select('key').where('key', 'like', `${prefix}%`).execute()).map((l) => l.key);
    const logs = (await db.selectFrom('task_log').select('detail').where('detail', 'like', `label=${prefix}%`).execute()).map((l) => l.detail);
    return { labels: labels.sort(), locks: locks.sort(), logs: logs.sort() };
  }

  it('undoes a failing task alone (held lock, throwing prepare, failed statement) and sends only the created ones', async () => {
    await tasks.submit(spec('a-held', 'a lock held'));
    const depth0 = await queue.depth(NODE);
    const results = await tasks.submitMany([
      spec('a1', 'a lock 1'),
      spec('a2', 'a lock held'),
      spec('a3', 'a lock 3', async (trx, taskId) => {
        await writeLog(trx, preparedEntry('a3', taskId));
        throw new Error('prepare refused');
      }),
      spec('a4', 'a lock 4', async (trx, taskId) => {
        await writeLog(trx, preparedEntry('a4', taskId));
        // A duplicate key: the database refuses the statement (PostgreSQL would abort the transaction).
        await trx.insertInto('task_lock').values({ key: 'a lock held', task_id: taskId, created: new Date().toISOString() }).execute();
      }),
      spec('a5', 'a lock 5'),
      // The key a1 took in this batch.
      spec('a6', 'a lock 1'),
    ]);

    expect(results.map((r) => r.ok)).toEqual([true, false, false, false, true, false]);
    const lockErr = (results[1] as Extract<SubmitResult, { ok: false }>).error;
    expect(lockErr).toBeInstanceOf(FailureError);
    expect((lockErr as FailureError).result).toBe(LOCK_FAILED);
    expect(((results[2] as Extract<SubmitResult, { ok: false }>).error as Error).message).toBe('prepare refused');
    expect((results[3] as Extract<SubmitResult, { ok: false }>).error).not.toBeInstanceOf(FailureError);
    expect(((results[5] as Extract<SubmitResult, { ok: false }>).error as FailureError).result).toBe(LOCK_FAILED);

    // Only a1 and a5 (and the task holding the lock) exist, with their locks and log entries; the
    // rows a3 and a4 wrote in `prepare` are gone.
    expect(await rowsOf('a')).toEqual({
      labels: ['a-held', 'a1', 'a5'],
      locks: ['a lock 1', 'a lock 5', 'a lock held'],
      logs: ['label=a-held', 'label=a1', 'label=a5'],
    });
    const ids = results.flatMap((r) => (r.ok ? [r.taskId] : []));
    expect(await s.runtime.ctx.db.selectFrom('task').select('state').where('id', 'in', ids).execute()).toEqual([{ state: 'PENDING' }, { state: 'PENDING' }]);
    expect(await queue.depth(NODE)).toBe(depth0 + 2);
  });

  it('inside a caller transaction, sends nothing before the commit and nothing at all after a rollback', async () => {
    const depth0 = await queue.depth(NODE);
    const db = s.runtime.ctx.db;
    const committed = await db.transaction().execute(async (trx) => {
      const batch = await tasks.submitManyIn(trx, [spec('b1', 'b lock 1'), spec('b2', 'b lock 2')]);
      expect(batch.results.every((r) => r.ok)).toBe(true);
      expect(await queue.depth(NODE)).toBe(depth0);
      return batch;
    });
    expect(await queue.depth(NODE)).toBe(depth0);
    await committed.send();
    await committed.send(); // once only
    expect(await queue.depth(NODE)).toBe(depth0 + 2);

    let rolledBack: Awaited<ReturnType<TaskService['submitManyIn']>> | undefined;
    await expect(
      db.transaction().execute(async (trx) => {
        rolledBack = await tasks.submitManyIn(trx, [spec('c1', 'c lock 1')]);
        throw new Error('the caller gives up');
      }),
    ).rejects.toThrow('the caller gives up');
    expect(rolledBack!.results[0]!.ok).toBe(true);
    expect(await rowsOf('c')).toEqual({ labels: [], locks: [], logs: [] });
    expect(await rowsOf('b')).toEqual({ labels: ['b1', 'b2'], locks: ['b lock 1', 'b lock 2'], logs: ['label=b1', 'label=b2'] });
  });
});
