/**
 * The rows of a task submission (TaskService.submit and submitMany): the locks, the caller's
 * `prepare` changes, the task row and its PENDING task-log entry, in that order, inside the
 * caller's transaction. One task at a time for `submit`; in bulk for `submitMany`, where a task
 * that fails is undone alone.
 */
import { sql, type Insertable, type Transaction } from 'kysely';
import type { Database, NewSnapshot } from '../db/schema.js';
import { apiError, FailureError, LOCK_FAILED } from '../domain/errors.js';
import { writeLog, writeLogs, type LogEntry } from './task-log.js';
import { insertRows } from '../db/bulk.js';
import type { TaskSpec } from './task.types.js';

class LockBusy extends Error {}

/** A held lock is Danube's 400 `Task did not acquire lock`; other errors pass unchanged. */
export function translateSubmitError(err: unknown): unknown {
  return err instanceof LockBusy ? new FailureError(LOCK_FAILED) : err;
}

/** One task's rows; returns the agent's payload. Throws LockBusy (see translateSubmitError) or what `prepare` throws. */
export async function insertTask<C>(trx: Transaction<Database>, spec: TaskSpec<C>, taskId: string, now: string): Promise<unknown> {
  for (const key of spec.locks) {
    const res = await trx
      .insertInto('task_lock')
      .values({ key, task_id: taskId, created: now })
      .onConflict((oc) => oc.column('key').doNothing())
      .executeTakeFirst();
    if (Number(res.numInsertedOrUpdatedRows ?? 0) === 0) throw new LockBusy();
  }
  const prepared = await spec.prepare(trx, taskId);
  await trx.insertInto('task').values(taskRow(spec, taskId, now, prepared)).execute();
  await writeLog(trx, pendingLogEntry(spec, taskId, now));
  return prepared.payload;
}

export type InsertResult = { readonly ok: true; readonly payload: unknown } | { readonly ok: false; readonly error: unknown };

/**
 * Many tasks' rows, with the statements a single task cannot make fail written in bulk: the locks
 * of all tasks in a few statements (src/db/bulk.ts) (a task missing one of its keys fails with LOCK_FAILED and its
 * other keys are removed), each `prepare` under its own savepoint (what it wrote is undone if it
 * throws, and on PostgreSQL the transaction goes on after a failed statement), then the task rows
 * and log entries of the tasks that got this far. Only an error in those last rows, which no
 * single task causes, rejects the whole call. Results are in the order of `items`, errors already
 * translated.
 *
 * One difference from inserting the tasks one by one: a key wanted by two tasks goes to the first
 * even when that one then fails in `prepare`; the second still fails with LOCK_FAILED.
 */
export async function insertTasks(
  trx: Transaction<Database>,
  items: ReadonlyArray<{ readonly spec: TaskSpec<unknown>; readonly taskId: string }>,
  now: string,
): Promise<InsertResult[]> {
  // Locks: a key already held, or taken by an earlier task of this batch, does not come back.
  // In key order (a stable sort: among tasks wanting one key the first still gets it), so that two
  // transactions inserting overlapping keys at once (servers, or pipelined scheduler pages) wait
  // for each other in one direction only and cannot deadlock.
  const wanted = items
    .flatMap(({ spec, taskId }) => spec.locks.map((key) => ({ key, task_id: taskId, created: now })))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const got = new Set<string>();
  for (const r of await insertRows(trx, 'task_lock', wanted, { onConflictDoNothing: ['key'], returning: ['key', 'task_id'] })) {
    got.add(`${String(r['task_id'])}\n${String(r['key'])}`);
  }
  const results: Array<InsertResult | null> = [];
  const undo: string[] = [];
  const created: Array<{ spec: TaskSpec<unknown>; taskId: string; prepared: { payload: unknown; context: unknown } }> = [];
  const bulk: Array<{ index: number; spec: TaskSpec<unknown>; taskId: string }> = [];
  for (const { spec, taskId } of items) {
    // A key named twice by one task is busy the second time, as in insertTask.
    if (new Set(spec.locks).size !== spec.locks.length || !spec.locks.every((key) => got.has(`${taskId}\n${key}`))) {
      results.push({ ok: false, error: translateSubmitError(new LockBusy()) });
      undo.push(taskId);
      continue;
    }
    if (spec.bulk) {
      // Written below with the other tasks' rows.
      bulk.push({ index: results.length, spec, taskId });
      results.push(null);
      continue;
    }
    // Same name at every level: each savepoint is released or rolled back before the next.
    await sql`SAVEPOINT esnap_submit`.execute(trx);
    try {
      const prepared = await spec.prepare(trx, taskId);
      await sql`RELEASE SAVEPOINT esnap_submit`.execute(trx);
      created.push({ spec, taskId, prepared });
      results.push({ ok: true, payload: prepared.payload });
    } catch (err) {
      await sql`ROLLBACK TO SAVEPOINT esnap_submit`.execute(trx);
      await sql`RELEASE SAVEPOINT esnap_submit`.execute(trx);
      results.push({ ok: false, error: translateSubmitError(err) });
      undo.push(taskId);
    }
  }
  if (bulk.length > 0) {
    // The snapshot rows of all bulk tasks in multi-row statements. A row whose name is taken on its
    // disk (a create that committed after the caller checked) is not inserted: its task fails as
    // that create would have (406 `Snapshot already exists`) and its other rows are removed.
    const key = (r: { vm_uuid: string; disk_real_id: number; name: string }) => `${r.vm_uuid}\n${r.disk_real_id}\n${r.name}`;
    const rows = bulk.flatMap((b) => b.spec.bulk!.snapshots);
    const inserted = new Map<string, { id: number; type: number }>();
    const back = (await insertRows(trx, 'snapshot', rows as NewSnapshot[], {
      onConflictDoNothing: ['vm_uuid', 'disk_real_id', 'name'],
      returning: ['id', 'type', 'vm_uuid', 'disk_real_id', 'name'],
    })) as Array<{ id: number; type: number; vm_uuid: string; disk_real_id: number; name: string }>;
    for (const r of back) inserted.set(key(r), { id: r.id, type: r.type });
    const orphans: number[] = [];
    for (const b of bulk) {
      const mine = b.spec.bulk!.snapshots.map((r) => inserted.get(key(r)));
      if (mine.every((r) => r !== undefined)) {
        const prepared = b.spec.bulk!.finish(mine as Array<{ id: number; type: number }>);
        created.push({ spec: b.spec, taskId: b.taskId, prepared });
        results[b.index] = { ok: true, payload: prepared.payload };
      } else {
        for (const r of mine) if (r) orphans.push(r.id);
        results[b.index] = { ok: false, error: apiError('snapshotExists') };
        undo.push(b.taskId);
      }
    }
    for (let i = 0; i < orphans.length; i += 500) await trx.deleteFrom('snapshot').where('id', 'in', orphans.slice(i, i + 500)).execute();
  }
  for (let i = 0; i < undo.length; i += 500) {
    await trx.deleteFrom('task_lock').where('task_id', 'in', undo.slice(i, i + 500)).execute();
  }
  await insertRows(
    trx,
    'task',
    created.map((c) => taskRow(c.spec, c.taskId, now, c.prepared)),
  );
  await writeLogs(
    trx,
    created.map((c) => pendingLogEntry(c.spec, c.taskId, now)),
  );
  return results as InsertResult[];
}

function taskRow<C>(spec: TaskSpec<C>, taskId: string, now: string, prepared: { payload: unknown; context: C }): Insertable<Database['task']> {
  return {
    id: taskId,
    type: spec.type,
    kind: spec.kind,
    define_id: spec.defineId ?? null,
    user_id: spec.userId,
    owner_id: spec.ownerId,
    dc_id: spec.dcId,
    vm_uuid: spec.vmUuid,
    node_id: spec.node.id,
    node: spec.node.hostname,
    payload: JSON.stringify(prepared.payload),
    context: JSON.stringify(prepared.context),
    apiview: JSON.stringify({ ...spec.apiview, time: now.replace('Z', '+00:00') }),
    state: 'PENDING',
    result: null,
    log_msg: spec.log.msg,
    log_detail: spec.log.detail,
    created: now,
    started: null,
    finished: null,
  };
}

function pendingLogEntry<C>(spec: TaskSpec<C>, taskId: string, now: string): LogEntry {
  return {
    time: now,
    taskId,
    taskType: spec.type,
    status: 'PENDING',
    userId: spec.userId,
    username: spec.username,
    ownerId: spec.ownerId,
    dcId: spec.dcId,
    msg: spec.log.msg,
    detail: spec.log.detail,
    object: spec.log.object,
  };
}
