/**
 * Tasks: submission (row + log + locks in one transaction, then the queue), the one completion
 * path for success, failure, cancel and crash repair, and the status that clients read.
 *
 * Every asynchronous operation is a `kind` with a handler registered by its feature; the handler
 * applies the operation's database effects for an outcome inside the completion transaction.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Clock, Logger } from '../app-context.js';
import type { Database, TaskRow } from '../db/schema.js';
import { makeTaskId, isDummyTaskId } from '../domain/taskid.js';
import { isFinalTaskState, type TaskState } from '../domain/task-state.js';
import type { QueueMessage, TaskQueue } from '../queue/queue.js';
import type { TaskEvents } from './task.events.js';
import { insertTask, insertTasks, translateSubmitError } from './task.insert.js';
import type {
  CompletionEvent,
  CompletionListener,
  KindHandler,
  RunningCanceller,
  SubmitResult,
  SubmittedBatch,
  TaskOutcome,
  TaskSpec,
  TaskStatus,
} from './task.types.js';

/** A failed outcome with Danube's detail text. */
export function failure(message: string, returncode = 1): TaskOutcome {
  return { returncode, message, detail: `Got bad return code (${returncode}). Error: ${message}` };
}

/** How long a cancel waits for a stopped task to end before it answers with the status (Danube sleeps 1 s). */
const CANCEL_WAIT_MS = 5000;

/** Thrown inside a revoking completion whose task was claimed meanwhile: rolls it back. */
const NOT_PENDING = new Error('task is no longer pending');

export function stateHttpStatus(state: string): number {
  switch (state) {
    case 'SUCCESS':
      return 200;
    case 'FAILURE':
      return 400;
    case 'REVOKED':
      return 410;
    default:
      return 201;
  }
}

/** A task result object with Danube's key order (`message, returncode, detail`, then any others). */
export function danubeResultOrder(result: unknown): unknown {
  if (result === null || typeof result !== 'object' || Array.isArray(result)) return result;
  const r = result as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of ['message', 'returncode', 'detail']) if (k in r) out[k] = r[k];
  return Object.assign(out, r);
}

export class TaskService {
  readonly #handlers = new Map<string, KindHandler<unknown>>();
  readonly #listeners: CompletionListener[] = [];
  #canceller: RunningCanceller | null = null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly queue: TaskQueue,
    private readonly events: TaskEvents,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  registerKind<C>(kind: string, handler: KindHandler<C>): void {
    // The context a handler gets is the JSON of what its kind's `prepare` returned, read back from
    // the task row: a C as long as C is plain data (it is for every kind), hence the one cast here.
    this.#handlers.set(kind, { complete: (trx, task, context, outcome) => handler.complete(trx, task, context as C, outcome) });
  }

  addListener(listener: CompletionListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Creates a task: in one transaction the caller's `prepare` changes, the task row, the PENDING
   * task-log entry and the locks; then the task goes to its node's queue. A held lock rolls it all
   * back and answers 400 `Task did not acquire lock`.
   */
  /**
   * A control message (not a task: no row, no claim, no outcome) to a node's agent, on its queue:
   * SSH trust and restore announcements (src/transport/trust.service.ts).
   */
  async sendControl(node: string, msg: QueueMessage): Promise<void> {
    await this.queue.send(node, msg);
  }

  async submit<C>(spec: TaskSpec<C>): Promise<string> {
    this.#requireKind(spec);
    const taskId = this.#newId(spec);
    const now = this.clock.now().toISOString();
    let payload: unknown;
    try {
      await this.db.transaction().execute(async (trx) => {
        payload = await insertTask(trx, spec, taskId, now);
      });
    } catch (err) {
      throw translateSubmitError(err);
    }
    await this.queue.send(spec.node.hostname, { taskId, kind: spec.kind, payload });
    return taskId;
  }

  /**
   * Creates many tasks in one transaction: a task that fails (its lock is held, its `prepare`
   * throws or the database refuses a statement of it) is undone alone, with exactly the error
   * `submit` would throw, and the others are created; the messages are sent after the commit.
   * One transaction instead of one per task is what lets a scheduler tick queue thousands of runs
   * in seconds.
   *
   * @example
   * const results = await tasks.submitMany([specA, specB]);
   * // [{ ok: true, taskId: '…' }, { ok: false, error: FailureError(LOCK_FAILED) }]
   */
  async submitMany(specs: readonly TaskSpec<unknown>[]): Promise<readonly SubmitResult[]> {
    const batch = await this.db.transaction().execute((trx) => this.submitManyIn(trx, specs));
    await batch.send();
    return batch.results;
  }

  /**
   * `submitMany` inside the caller's transaction, so other changes commit with the tasks or not
   * at all (the scheduler's slot claims). Nothing is sent: the caller calls `send()` once the
   * transaction has committed, never before (an agent must not see a task that may roll back).
   *
   * The rows are those of `submit`, partly written in bulk (task.insert.ts says how, and the one
   * case where the outcome differs from submitting the tasks in turn).
   */
  async submitManyIn(trx: Transaction<Database>, specs: readonly TaskSpec<unknown>[]): Promise<SubmittedBatch> {
    const now = this.clock.now().toISOString();
    const results: Array<SubmitResult | null> = specs.map(() => null);
    const ids = specs.map((spec, i) => {
      try {
        this.#requireKind(spec);
        return this.#newId(spec);
      } catch (error) {
        results[i] = { ok: false, error };
        return null;
      }
    });

    const items = specs.flatMap((spec, i) => (ids[i] ? [{ spec, taskId: ids[i]! }] : []));
    const inserted = await insertTasks(trx, items, now);
    const created: Array<{ i: number; taskId: string; payload: unknown }> = [];
    let k = 0;
    for (const [i, id] of ids.entries()) {
      if (!id) continue;
      const r = inserted[k++]!;
      if (r.ok) created.push({ i, taskId: id, payload: r.payload });
      else results[i] = { ok: false, error: r.error };
    }
    const messages = created.map((c) => ({ node: specs[c.i]!.node.hostname, msg: { taskId: c.taskId, kind: specs[c.i]!.kind, payload: c.payload } }));
    for (const c of created) results[c.i] = { ok: true, taskId: c.taskId };
    let sent = false;
    return {
      results: results as SubmitResult[],
      send: async () => {
        if (sent) return;
        sent = true;
        // Every message is tried; a task whose send failed stays PENDING, as after a failed
        // `submit` (the embedded agent's start-up recovery re-sends it; in cluster mode the agent
        // deadline fails it with the failure cleanup).
        const errors: unknown[] = [];
        const byNode = new Map<string, QueueMessage[]>();
        for (const m of messages) {
          const list = byNode.get(m.node);
          if (list) list.push(m.msg);
          else byNode.set(m.node, [m.msg]);
        }
        for (const [node, msgs] of byNode) {
          if (this.queue.sendMany) {
            // In bulk (pg-boss: a statement per 1,000 jobs instead of one per task).
            await this.queue.sendMany(node, msgs).catch((err: unknown) => errors.push(err));
            continue;
          }
          for (const msg of msgs) {
            try {
              await this.queue.send(node, msg);
            } catch (err) {
              errors.push(err);
            }
          }
        }
        if (errors.length > 0) throw new AggregateError(errors, `${errors.length} of ${messages.length} task messages could not be sent`);
      },
    };
  }

  #requireKind(spec: TaskSpec<unknown>): void {
    if (!this.#handlers.has(spec.kind)) throw new Error(`no completion handler for task kind ${spec.kind}`);
  }

  #newId(spec: TaskSpec<unknown>): string {
    return makeTaskId({ userId: spec.userId, type: spec.type, ownerId: spec.ownerId, dcBound: spec.dcBound, dcId: spec.dcId }, randomUUID());
  }

  /** PENDING → STARTED, once; false when the task was cancelled, finished or taken already. */
  async markStarted(taskId: string): Promise<boolean> {
    const res = await this.db
      .updateTable('task')
      .set({ state: 'STARTED', started: this.clock.now().toISOString() })
      .where('id', '=', taskId)
      .where('state', '=', 'PENDING')
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /**
   * The one completion path: success, failure, cancel (`revoked`) and crash repair all come here.
   * Idempotent: a task that already ended is left alone. `revoked` applies only to a task still
   * PENDING (checked in the final update itself); otherwise nothing changes.
   */
  async complete(taskId: string, outcome: TaskOutcome, opts: { revoked?: boolean } = {}): Promise<void> {
    await this.#complete(taskId, outcome, opts);
  }

  /**
   * `complete`, returning the task's state as it left it: the final state it wrote, else the state
   * it found (an ended task's; STARTED for a revoke that lost the race with an agent's claim), or
   * undefined for an unknown task; so `cancel` needs no second read.
   */
  async #complete(taskId: string, outcome: TaskOutcome, opts: { revoked?: boolean }): Promise<TaskState | undefined> {
    let after: (() => Promise<void>) | undefined;
    let finished = false;
    let found: TaskState | undefined;
    let event: CompletionEvent | undefined;
    let who: { username: string; object_name: string } | undefined;
    await this.db.transaction().execute(async (trx) => {
      const task = await trx.selectFrom('task').selectAll().where('id', '=', taskId).executeTakeFirst();
      found = task?.state as TaskState | undefined;
      if (!task || isFinalTaskState(task.state) || (opts.revoked && task.state !== 'PENDING')) return;
      const handler = this.#handlers.get(task.kind);
      if (!handler) throw new Error(`no completion handler for task kind ${task.kind}`);
      const context: unknown = JSON.parse(task.context);
      const done = await handler.complete(trx, task, context, outcome);
      after = done.after;
      const revoked = opts.revoked === true || outcome.cancelled === true;
      const state: TaskState = revoked ? 'REVOKED' : outcome.returncode === 0 ? 'SUCCESS' : 'FAILURE';
      const result = revoked ? 'terminated' : done.result;
      const now = this.clock.now().toISOString();
      // A cancel revokes only a task no agent has claimed, decided in this one statement: a claim
      // that lands after the read above leaves no row to update, and the whole cleanup rolls back.
      const claimed = await trx
        .updateTable('task')
        .set({ state, result: JSON.stringify(result), finished: now })
        .where('id', '=', taskId)
        .where('state', 'in', opts.revoked ? ['PENDING'] : ['PENDING', 'STARTED'])
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1) {
        if (opts.revoked) throw NOT_PENDING;
        throw new Error(`task ${taskId} ended twice`);
      }
      // Danube's second task-log row: the PENDING one stays, this one carries the result's detail.
      const pending = await trx.selectFrom('task_log').selectAll().where('task_id', '=', taskId).where('status', '=', 'PENDING').executeTakeFirst();
      if (pending) {
        const { id: _id, ...row } = pending;
        const detail = opts.revoked ? 'revoked' : outcome.cancelled ? 'terminated' : typeof result === 'string' ? result : (result.detail ?? result.message);
        await trx.insertInto('task_log').values({ ...row, status: state, time: now, detail }).execute();
        who = { username: pending.username, object_name: pending.object_name };
      }
      event = { task: { ...task, state, result: JSON.stringify(result), finished: now }, state, result };
      for (const l of this.#listeners) {
        if (!l.inTransaction) continue;
        await sql`SAVEPOINT esnap_listener`.execute(trx);
        try {
          await l.inTransaction(trx, event);
          await sql`RELEASE SAVEPOINT esnap_listener`.execute(trx);
        } catch (err) {
          await sql`ROLLBACK TO SAVEPOINT esnap_listener`.execute(trx);
          await sql`RELEASE SAVEPOINT esnap_listener`.execute(trx);
          this.log.error({ err, taskId }, 'completion listener failed');
        }
      }
      // The locks go last, after the listeners' definition updates: a scheduler tick locks
      // definitions and then inserts disk locks in one transaction (PostgreSQL), so the same order
      // here keeps the two from deadlocking.
      await trx.deleteFrom('task_lock').where('task_id', '=', taskId).execute();
      finished = true;
    }).catch((err: unknown) => {
      // A revoke that lost the race with a claim changed nothing (see the final update above).
      if (err !== NOT_PENDING) throw err;
      found = 'STARTED';
    });
    if (!finished) return found;
    this.#audit(event!, who);
    for (const l of this.#listeners) {
      try {
        await l.committed?.(event!);
      } catch (err) {
        this.log.error({ err, taskId }, 'completion listener failed');
      }
    }
    this.events.notify(taskId);
    if (after) {
      try {
        await after();
      } catch (err) {
        this.log.error({ err, taskId }, 'step after task completion failed');
      }
    }
    return event!.state;
  }

  /**
   * The task's one line on standard output when it ends (`journalctl -u esnap` as an audit trail):
   * info for a success, warning with the cause otherwise. `who` is its task-log entry (user name,
   * VM host name), absent only if housekeeping removed it.
   */
  #audit(event: CompletionEvent, who: { username: string; object_name: string } | undefined): void {
    const { task, state, result } = event;
    const line = {
      taskId: task.id,
      user: who?.username ?? `#${task.user_id}`,
      vm: task.vm_uuid === null ? null : (who?.object_name ?? task.vm_uuid),
      vmUuid: task.vm_uuid,
      operation: task.kind,
      action: task.log_msg,
      outcome: state,
      durationMs: Date.parse(task.finished!) - Date.parse(task.created),
    };
    if (state === 'SUCCESS') this.log.info(line, 'task ended');
    else this.log.warn({ ...line, cause: typeof result === 'string' ? result : (result.detail ?? result.message) }, 'task ended');
  }

  async get(taskId: string): Promise<TaskRow | undefined> {
    return this.db.selectFrom('task').selectAll().where('id', '=', taskId).executeTakeFirst();
  }

  /** What `GET /task/<id>/status` answers; unknown and dummy ids are 404 `Task does not exist (anymore)`. */
  async statusOf(taskId: string): Promise<TaskStatus> {
    const task = isDummyTaskId(taskId) ? undefined : await this.get(taskId);
    if (!task) {
      return { found: false, done: true, httpStatus: 404, body: { detail: 'Task does not exist (anymore)' } };
    }
    const done = isFinalTaskState(task.state);
    // Key order as Danube printed these dicts: status, result, task_id; a result message, returncode, detail.
    return {
      found: true,
      done,
      httpStatus: stateHttpStatus(task.state),
      body: { status: task.state, result: task.result === null ? null : danubeResultOrder(JSON.parse(task.result) as unknown), task_id: task.id },
    };
  }

  /** The way to reach agents that run tasks (the local agent, or cluster messaging). */
  setRunningCanceller(canceller: RunningCanceller): void {
    this.#canceller = canceller;
  }

  /**
   * Cancels a task. One no agent has taken is revoked here with the failure cleanup. One an agent
   * runs is stopped by that agent, which undoes it and reports it revoked; this waits briefly for
   * that end. False when the task cannot be cancelled: it ended, or its operation is past its point
   * of no return (it finishes), or no agent answers for it.
   */
  async cancel(taskId: string): Promise<boolean> {
    const task = await this.get(taskId);
    if (!task || (task.state !== 'PENDING' && task.state !== 'STARTED')) return false;
    if (task.state === 'PENDING' && (task.node === null || (await this.queue.withdraw(task.node, taskId)))) {
      // Revoked only if still PENDING at the final update (complete()); a claim that won the race
      // makes it a running task, cancelled below through its agent.
      const state = await this.#complete(taskId, { returncode: 1, message: 'terminated', detail: 'terminated' }, { revoked: true });
      if (state !== 'STARTED') return state === 'REVOKED';
    }
    if (task.node === null || !this.#canceller) return false;
    if ((await this.#canceller(task.node, taskId)) !== 'cancelled') return false;
    await this.#waitForEnd(taskId, CANCEL_WAIT_MS);
    return true;
  }

  async #waitForEnd(taskId: string, ms: number): Promise<void> {
    const limit = new AbortController();
    const timer = setTimeout(() => limit.abort(), ms);
    try {
      while (!limit.signal.aborted) {
        const woken = this.events.next(taskId, limit.signal);
        const t = await this.get(taskId);
        if (!t || isFinalTaskState(t.state)) return;
        await woken;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Start-up repair for a node whose agent runs in this process: tasks it had started are failed
   * with the failure cleanup (their storage state is unknown; the caller re-syncs their disks),
   * and tasks still pending are sent to the queue again.
   */
  async recover(node: string): Promise<{ failed: TaskRow[]; resent: number }> {
    const failed = await this.db.selectFrom('task').selectAll().where('node', '=', node).where('state', '=', 'STARTED').execute();
    for (const task of failed) {
      const message = 'Task was interrupted (the agent stopped while it ran)';
      await this.complete(task.id, { returncode: 1, message, detail: `Got bad return code (1). Error: ${message}` });
    }
    const pending = await this.db
      .selectFrom('task')
      .select(['id', 'kind', 'payload'])
      .where('node', '=', node)
      .where('state', '=', 'PENDING')
      .orderBy('created')
      .execute();
    for (const t of pending) {
      await this.queue.send(node, { taskId: t.id, kind: t.kind, payload: JSON.parse(t.payload) as unknown });
    }
    return { failed, resent: pending.length };
  }
}
