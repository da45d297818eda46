/**
 * Cancelling a running task in cluster mode: the server NOTIFYs the agents of the pg-boss schema
 * with `{node, taskId}`; the agent of that node, if it runs the task, stops it (or refuses past the
 * point of no return) and NOTIFYs its answer back. NOTIFY is the messaging servers and agents
 * already share (queue wake-ups); an agent needs no access to esnap's tables for it.
 *
 * A notification can be lost (the LISTEN connection dropping): the server then hears nothing within
 * its wait and answers 406 `Task cannot be canceled`, and the task runs on, which is safe.
 */
import type { Logger } from '../app-context.js';
import { channelName, type PgListener } from '../db/pg-listener.js';
import type { PgBossQueue } from '../queue/pgboss.queue.js';
import type { CancelAnswer } from '../storage/op-scope.js';

type Answer = CancelAnswer | 'unknown';

/** How long a server waits for the agent's answer. */
const ANSWER_WAIT_MS = 5000;

const requestChannel = (bossSchema: string): string => channelName('esnap_cancel', bossSchema);
const answerChannel = (bossSchema: string): string => channelName('esnap_cancel_answer', bossSchema);

/** The agent's side: answers cancels for tasks of its node. */
export function listenForCancels(
  listener: PgListener,
  queue: PgBossQueue,
  node: string,
  cancel: (taskId: string) => Answer,
  log: Logger,
): void {
  listener.listen(requestChannel(queue.schema), (payload) => {
    let m: { node?: unknown; taskId?: unknown };
    try {
      m = JSON.parse(payload) as typeof m;
    } catch {
      return;
    }
    if (m.node !== node || typeof m.taskId !== 'string') return;
    const answer = cancel(m.taskId);
    if (answer === 'unknown') return;
    queue.notify(answerChannel(queue.schema), JSON.stringify({ taskId: m.taskId, answer })).catch((err: unknown) => {
      log.warn({ err, taskId: m.taskId }, 'cancel answer could not be sent');
    });
  });
}

/** The server's side: asks the node's agent to stop a task and waits for its answer. */
export class ClusterCanceller {
  readonly #waiting = new Map<string, Set<(a: Answer) => void>>();

  constructor(
    listener: PgListener,
    private readonly queue: PgBossQueue,
  ) {
    listener.listen(answerChannel(queue.schema), (payload) => {
      let m: { taskId?: unknown; answer?: unknown };
      try {
        m = JSON.parse(payload) as typeof m;
      } catch {
        return;
      }
      if (typeof m.taskId !== 'string' || (m.answer !== 'cancelled' && m.answer !== 'committed')) return;
      for (const resolve of this.#waiting.get(m.taskId) ?? []) resolve(m.answer);
    });
  }

  async cancel(node: string, taskId: string): Promise<Answer> {
    let resolve!: (a: Answer) => void;
    const answered = new Promise<Answer>((r) => (resolve = r));
    const set = this.#waiting.get(taskId) ?? new Set();
    set.add(resolve);
    this.#waiting.set(taskId, set);
    const timer = setTimeout(() => resolve('unknown'), ANSWER_WAIT_MS);
    try {
      await this.queue.notify(requestChannel(this.queue.schema), JSON.stringify({ node, taskId }));
      return await answered;
    } finally {
      clearTimeout(timer);
      set.delete(resolve);
      if (set.size === 0) this.#waiting.delete(taskId);
    }
  }
}
