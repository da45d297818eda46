/**
 * Wake-ups for whoever waits on a task (ES-STREAM responses, long-polls). Completion calls
 * `notify`; nobody polls a timer to learn that a task ended. In cluster mode an adapter forwards
 * notifications between servers (PostgreSQL LISTEN/NOTIFY); in-process this is the whole story.
 */
export interface TaskEvents {
  /** Resolves at the next `notify(taskId)`, or when `signal` aborts. */
  next(taskId: string, signal?: AbortSignal): Promise<void>;
  notify(taskId: string): void;
}

export class LocalTaskEvents implements TaskEvents {
  readonly #waiters = new Map<string, Set<() => void>>();

  next(taskId: string, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(taskId);
      if (!set) {
        set = new Set();
        this.#waiters.set(taskId, set);
      }
      const waiters = set;
      const done = (): void => {
        waiters.delete(done);
        if (waiters.size === 0 && this.#waiters.get(taskId) === waiters) this.#waiters.delete(taskId);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  notify(taskId: string): void {
    const set = this.#waiters.get(taskId);
    if (!set) return;
    for (const done of [...set]) done();
  }

  /** Wakes every waiter (they re-read the task's state): used when notifications may have been missed. */
  wakeAll(): void {
    for (const taskId of [...this.#waiters.keys()]) this.notify(taskId);
  }
}
