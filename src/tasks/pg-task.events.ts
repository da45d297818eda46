/**
 * TaskEvents across servers: completion on any server wakes the streams and long-polls waiting on
 * that task on every server, through PostgreSQL `NOTIFY` on one channel per esnap schema. Local
 * waiters are woken at once, without the round trip; the server's own notification comes back too
 * and is a harmless extra wake-up (waiters always re-read the task's state).
 *
 * A dropped LISTEN connection can miss notifications: on reconnect every local waiter is woken to
 * re-check. Nobody polls a timer to learn that a task ended.
 */
import { sql, type Kysely } from 'kysely';
import type { Logger } from '../app-context.js';
import type { Database } from '../db/schema.js';
import type { PgListener } from '../db/pg-listener.js';
import { LocalTaskEvents, type TaskEvents } from './task.events.js';

export const TASK_CHANNEL = 'esnap_task_done';

export class PgTaskEvents implements TaskEvents {
  readonly #local = new LocalTaskEvents();

  constructor(
    private readonly db: Kysely<Database>,
    listener: PgListener,
    private readonly channel: string,
    private readonly log: Logger,
  ) {
    listener.listen(channel, (taskId) => this.#local.notify(taskId));
    listener.onReconnect(() => this.#local.wakeAll());
  }

  next(taskId: string, signal?: AbortSignal): Promise<void> {
    return this.#local.next(taskId, signal);
  }

  notify(taskId: string): void {
    this.#local.notify(taskId);
    // Called after the completion committed; NOTIFY outside a transaction is delivered at once.
    sql`SELECT pg_notify(${this.channel}, ${taskId})`.execute(this.db).catch((err: unknown) => {
      // The other servers' waiters still re-check at their next keep-alive or on reconnect.
      this.log.warn({ err, taskId }, 'task completion NOTIFY failed');
    });
  }
}
