/**
 * The task queue: the server sends a node's tasks to that node's queue; the node's agent works
 * them. Adapters: in-process (embedded mode; persistence is the task table itself) and pg-boss
 * (cluster mode). Messages carry everything an agent needs, so an agent never reads esnap's tables.
 */
export interface QueueMessage {
  readonly taskId: string;
  readonly kind: string;
  readonly payload: unknown;
}

export type QueueHandler = (msg: QueueMessage) => Promise<void>;

export interface TaskQueue {
  send(node: string, msg: QueueMessage): Promise<void>;
  /**
   * Many messages to one node's queue in a few statements (a scheduler tick sends thousands);
   * the same outcome as `send` for each. Optional: without it, callers send one by one.
   */
  sendMany?(node: string, msgs: readonly QueueMessage[]): Promise<void>;
  /** Starts working the node's queue with up to `concurrency` messages at a time. */
  work(node: string, handler: QueueHandler, opts?: { concurrency?: number }): Promise<void>;
  /** Stops taking messages and waits for the ones in flight. */
  stop(): Promise<void>;
  /**
   * Takes back a message no worker has taken yet, so it never runs (cancel, deadline). True when
   * it will not be delivered; false when a worker already has it.
   */
  withdraw(node: string, taskId: string): Promise<boolean>;
  /** Messages sent but not yet taken, per node (for metrics and tests). */
  depth(node: string): Promise<number>;
}
