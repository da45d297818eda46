/**
 * The scope of one agent task's storage operation: how a cancel reaches a running driver, and how a
 * driver says it has passed its point of no return.
 *
 * The agent runs every task's operation inside `runInScope`. Inside it:
 * - every command the runner starts is tied to the scope's signal: a cancel kills it, so the driver
 *   call fails and its failure path runs (drivers need no code for this);
 * - `pointOfNoReturn()` is the hook for a driver whose operation has a step after which it must
 *   finish (e.g. the atomic switch of a rollback written aside): it throws `OperationCancelled` if
 *   the task was cancelled before (the driver then undoes what it wrote aside), and from then on a
 *   cancel is refused (406 `Task cannot be canceled`) and the operation runs to its end;
 * - `throwIfCancelled()` lets a long in-process step (a copy loop) stop early.
 *
 * Both steps run on the one JavaScript thread, so "cancelled first" and "committed first" exclude
 * each other without a lock.
 *
 * @example
 *   // In a driver's rollback, once the snapshot's content is written aside and synced:
 *   pointOfNoReturn();
 *   await rename(aside, image); // from here a cancel answers 406 and the rollback finishes
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export class OperationCancelled extends Error {
  override readonly name = 'OperationCancelled';
  constructor() {
    super('Task was cancelled');
  }
}

export type CancelAnswer = 'cancelled' | 'committed';

export class OpScope {
  readonly #controller = new AbortController();
  #committed = false;

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get cancelled(): boolean {
    return this.#controller.signal.aborted;
  }

  get committed(): boolean {
    return this.#committed;
  }

  /** A cancel: aborts the operation unless it has passed its point of no return. */
  cancel(): CancelAnswer {
    if (this.#committed) return 'committed';
    this.#controller.abort(new OperationCancelled());
    return 'cancelled';
  }

  /** The operation has ended: a cancel from now on is refused (the outcome is being reported). */
  end(): void {
    this.#committed = true;
  }

  /** Marks the point of no return; throws OperationCancelled when a cancel came first. */
  commit(): void {
    if (this.cancelled) throw new OperationCancelled();
    this.#committed = true;
  }
}

const storage = new AsyncLocalStorage<OpScope>();

/** Runs `fn` with `scope` as the current operation's scope. */
export function runInScope<T>(scope: OpScope, fn: () => Promise<T>): Promise<T> {
  return storage.run(scope, fn);
}

/** Runs `fn` outside any task's scope (the undo of a cancelled operation must not be cancelled too). */
export function outsideScope<T>(fn: () => Promise<T>): Promise<T> {
  return storage.exit(fn);
}

/** The current operation's cancel signal, if an agent task is running here. */
export function currentSignal(): AbortSignal | undefined {
  return storage.getStore()?.signal;
}

/**
 * The driver hook: from here on the operation must finish and a cancel answers 406. Throws
 * OperationCancelled when the task was cancelled before it got here. Outside a task it does nothing.
 */
export function pointOfNoReturn(): void {
  storage.getStore()?.commit();
}

/**
 * The point of no return of the current operation, to be passed later from a callback (a process's
 * exit, outside the scope's async context): marks it unless a cancel came first, and then does
 * nothing (the cancel's kill is under way and the operation fails with it).
 */
export function pointOfNoReturnLater(): () => void {
  const scope = storage.getStore();
  return () => {
    if (scope && !scope.cancelled) scope.commit();
  };
}

/** Throws OperationCancelled when the current task has been cancelled (for long in-process steps). */
export function throwIfCancelled(): void {
  if (storage.getStore()?.cancelled) throw new OperationCancelled();
}

/** The signal to give a command: the caller's and the current task's, whichever aborts first. */
export function withScopeSignal(signal: AbortSignal | undefined): AbortSignal | undefined {
  const task = currentSignal();
  if (!task) return signal;
  if (!signal) return task;
  return AbortSignal.any([signal, task]);
}
