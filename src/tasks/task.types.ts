/**
 * The task machinery's types: what a feature hands to TaskService (a spec, a kind's completion
 * handler), what agents report, what completion listeners see and what clients read.
 */
import type { Transaction } from 'kysely';
import type { Database, NewSnapshot, TaskRow } from '../db/schema.js';
import type { TaskType } from '../domain/taskid.js';
import type { TaskState } from '../domain/task-state.js';
import type { LogObject } from './task-log.js';

export interface TaskResult {
  readonly returncode: number;
  readonly message: string;
  readonly detail?: string;
}

/** What an agent reports for a task: the Danube result plus driver data (sizes, listings). */
export interface TaskOutcome extends TaskResult {
  readonly data?: unknown;
  /** The agent stopped the task on a cancel and undid it: it ends REVOKED (from STARTED too). */
  readonly cancelled?: boolean;
}

/**
 * Asks the agent of `node` to stop a task it runs: `cancelled` (it will report the task revoked),
 * `committed` (past its point of no return: it finishes), `unknown` (no agent there runs it).
 */
export type RunningCanceller = (node: string, taskId: string) => Promise<'cancelled' | 'committed' | 'unknown'>;

export interface TaskSpec<C = unknown> {
  readonly kind: string;
  readonly type: TaskType;
  readonly userId: number;
  readonly username: string;
  readonly ownerId: number;
  readonly dcId: number;
  readonly dcBound: boolean;
  readonly vmUuid: string | null;
  /** The snapshot definition the task runs for (an automatic create), kept in `task.define_id`. */
  readonly defineId?: number | null;
  readonly node: { readonly id: number; readonly hostname: string };
  readonly locks: readonly string[];
  readonly apiview: Record<string, unknown>;
  readonly log: { readonly msg: string; readonly detail: string; readonly object: LogObject };
  /**
   * Database changes made with the task, in its transaction (a pending row, status changes); it
   * returns the agent's payload and the completion's context.
   */
  readonly prepare: (trx: Transaction<Database>, taskId: string) => Promise<{ payload: unknown; context: C }>;
  /**
   * What `prepare` does, as data, when all it does is insert snapshot rows: `submitMany` then
   * inserts the rows of many tasks in a few multi-row statements (task.insert.ts) and calls
   * `finish` with each task's new rows (id, type), in the order of `snapshots`.
   */
  readonly bulk?: {
    readonly snapshots: readonly NewSnapshot[];
    readonly finish: (rows: ReadonlyArray<{ id: number; type: number }>) => { payload: unknown; context: C };
  };
}

export interface KindHandler<C = unknown> {
  /**
   * Applies the outcome inside the completion transaction. `outcome.returncode === 0` is success;
   * anything else (failure, cancel, crash) must undo the submission's changes. Returns the final
   * result the client sees (it may rewrite the message) and an optional step run after commit.
   */
  complete(
    trx: Transaction<Database>,
    task: TaskRow,
    context: C,
    outcome: TaskOutcome,
  ): Promise<{ result: TaskResult; after?: () => Promise<void> }>;
}

/** A task that has just ended, as completion listeners see it (state, result and finished set). */
export interface CompletionEvent {
  readonly task: TaskRow;
  readonly state: TaskState;
  readonly result: TaskResult | string;
}

/**
 * Observers of every task completion (the scheduler's bookkeeping, alerts, metrics), so features
 * can follow outcomes without editing each kind's handler.
 */
export interface CompletionListener {
  /**
   * Runs inside the completion transaction, after the final state is written, under a savepoint:
   * an error here is logged and undone without failing the completion.
   */
  inTransaction?(trx: Transaction<Database>, event: CompletionEvent): Promise<void>;
  /** Runs after commit, before waiters are woken; errors are logged. Keep it quick. */
  committed?(event: CompletionEvent): void | Promise<void>;
}

/** What a client reads of a task: its status body, or 404 `Task does not exist (anymore)`. */
export type TaskStatus =
  | {
      readonly found: true;
      readonly done: boolean;
      readonly httpStatus: number;
      readonly body: { task_id: string; status: string; result: unknown };
    }
  | { readonly found: false; readonly done: true; readonly httpStatus: 404; readonly body: { detail: string } };

/** One task of `submitMany`: its id, or the error `submit` would have thrown for it. */
export type SubmitResult = { readonly ok: true; readonly taskId: string } | { readonly ok: false; readonly error: unknown };

export interface SubmittedBatch {
  /** In the order of the specs. */
  readonly results: readonly SubmitResult[];
  /** Sends the created tasks to their queues; only after the transaction has committed. */
  send(): Promise<void>;
}
