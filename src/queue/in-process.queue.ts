import type { QueueHandler, QueueMessage, TaskQueue } from './queue.js';

interface NodeQueue {
  items: QueueMessage[];
  handler: QueueHandler | null;
  concurrency: number;
  running: number;
}

/**
 * The embedded queue: an in-memory FIFO per node. It is not the source of truth: every message is
 * a task row in state PENDING first, and start-up re-sends those (see TaskService.recover), so a
 * restart loses nothing; the agent's PENDING→STARTED transition is conditional, so nothing runs twice.
 */
export class InProcessQueue implements TaskQueue {
  readonly #nodes = new Map<string, NodeQueue>();
  readonly #inFlight = new Set<Promise<void>>();
  #stopped = false;
  readonly #onError: (err: unknown, msg: QueueMessage) => void;

  constructor(opts: { onError?: (err: unknown, msg: QueueMessage) => void } = {}) {
    this.#onError = opts.onError ?? (() => undefined);
  }

  #node(node: string): NodeQueue {
    let q = this.#nodes.get(node);
    if (!q) {
      q = { items: [], handler: null, concurrency: 1, running: 0 };
      this.#nodes.set(node, q);
    }
    return q;
  }

  async send(node: string, msg: QueueMessage): Promise<void> {
    const q = this.#node(node);
    q.items.push(msg);
    this.#pump(q);
  }

  async work(node: string, handler: QueueHandler, opts: { concurrency?: number } = {}): Promise<void> {
    const q = this.#node(node);
    q.handler = handler;
    q.concurrency = Math.max(1, opts.concurrency ?? 4);
    this.#stopped = false;
    this.#pump(q);
  }

  async withdraw(node: string, taskId: string): Promise<boolean> {
    // A message already taken is past this point; the agent's conditional PENDING→STARTED claim
    // (TaskService.markStarted) then keeps a cancelled task from running.
    const q = this.#nodes.get(node);
    if (q) q.items = q.items.filter((m) => m.taskId !== taskId);
    return true;
  }

  async depth(node: string): Promise<number> {
    return this.#nodes.get(node)?.items.length ?? 0;
  }

  #pump(q: NodeQueue): void {
    while (!this.#stopped && q.handler && q.running < q.concurrency && q.items.length > 0) {
      const msg = q.items.shift()!;
      const handler = q.handler;
      q.running++;
      const p: Promise<void> = (async () => {
        try {
          await handler(msg);
        } catch (err) {
          this.#onError(err, msg);
        }
      })().finally(() => {
        q.running--;
        this.#inFlight.delete(p);
        this.#pump(q);
      });
      this.#inFlight.add(p);
    }
  }

  /**
   * Takes nothing more from the moment it is called (a server stop calls it first, before closing
   * HTTP); messages still queued, or sent meanwhile, stay PENDING in the task table and are sent
   * again by the next start's recover(). Resolves once the handlers in flight have finished.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#inFlight]);
  }
}
