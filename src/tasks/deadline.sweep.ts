/**
 * The cluster sweep, run by every server (each step is safe to run on several at once):
 *
 * 1. A node whose heartbeat has not changed for ESNAP_NODE_SILENCE_S becomes `unreachable`.
 * 2. A node task that no agent has taken for ESNAP_AGENT_DEADLINE_S is withdrawn from its queue
 *    (atomically: a job an agent takes at that moment stays with the agent) and fails with Danube's
 *    `Task queue worker (fast@<node>) is not responding!`.
 * 3. A taken task whose node has not heartbeaten for ESNAP_AGENT_DEADLINE_S fails too (the agent
 *    is gone; when it comes back it reports the job interrupted and the disks are re-synced).
 * 4. A pending task that never reached its queue (the send failed after the commit) is sent.
 *
 * Durations are measured here, on this server's monotonic clock, from what the sweep has seen
 * change (a heartbeat value, a task still open): never by comparing timestamps written by other
 * machines, whose clocks may differ, nor by the injected clock that tests move. A server that has
 * just started therefore waits a full period before it judges anything.
 *
 * Failures go through TaskService.complete, so the rows are reverted exactly as for any failure.
 * A long task whose agent still heartbeats is never cut.
 */
import type { AppContext } from '../app-context.js';
import { failure } from './task.service.js';
import { markUnreachable } from '../nodes/node.heartbeat.js';
import { NODE_ONLINE } from '../nodes/node.repository.js';
import type { PgBossQueue } from '../queue/pgboss.queue.js';
import { Ticker } from '../lib/ticker.js';

export interface SweepOptions {
  readonly deadlineS: number;
  readonly silenceS: number;
  /** How often to look (default: a quarter of the shorter limit, at most 5 s). */
  readonly everyMs?: number;
}

export function notRespondingFailure(node: string) {
  return failure(`Task queue worker (fast@${node}) is not responding!`);
}

export function silentNodeFailure(node: string, seconds: number) {
  return failure(`Node ${node} is unreachable (no heartbeat for ${seconds} s)`, 3);
}

export class ClusterSweep {
  readonly #ticker: Ticker;
  readonly #now: () => number;
  /** Per node: the last heartbeat value seen and when it was first seen. */
  readonly #beats = new Map<string, { value: string | null; since: number }>();
  /** Per open task: when this server first saw it open. */
  readonly #open = new Map<string, number>();

  constructor(
    private readonly ctx: AppContext,
    private readonly queue: PgBossQueue,
    private readonly opts: SweepOptions,
  ) {
    const every = opts.everyMs ?? Math.min(5000, (Math.min(opts.deadlineS, opts.silenceS) * 1000) / 4);
    this.#now = () => performance.now();
    this.#ticker = new Ticker('cluster sweep', every, () => this.tick(), ctx.log);
  }

  start(): void {
    this.#ticker.start();
  }

  stop(): Promise<void> {
    return this.#ticker.stop();
  }

  /** How long (ms) the node's heartbeat has been unchanged, as seen from here. */
  #silentFor(node: string): number {
    const b = this.#beats.get(node);
    return b ? this.#now() - b.since : 0;
  }

  async tick(): Promise<void> {
    const { db, log, tasks } = this.ctx;
    const now = this.#now();
    const nodes = await db.selectFrom('node').select(['hostname', 'status', 'last_heartbeat']).execute();
    for (const n of nodes) {
      const b = this.#beats.get(n.hostname);
      if (!b || b.value !== n.last_heartbeat) this.#beats.set(n.hostname, { value: n.last_heartbeat, since: now });
      else if (n.status === NODE_ONLINE && now - b.since > this.opts.silenceS * 1000) {
        if (await markUnreachable(db, n.hostname, n.last_heartbeat)) log.warn({ node: n.hostname }, 'node stopped heartbeating: unreachable');
      }
    }

    const open = await db.selectFrom('task').select(['id', 'state', 'node']).where('state', 'in', ['PENDING', 'STARTED']).orderBy('created').execute();
    const stillOpen = new Set(open.map((t) => t.id));
    for (const id of this.#open.keys()) if (!stillOpen.has(id)) this.#open.delete(id);
    const deadlineMs = this.opts.deadlineS * 1000;
    const unsent = new Map<string, string[]>();
    for (const t of open) {
      const since = this.#open.get(t.id);
      if (since === undefined) {
        this.#open.set(t.id, now);
        continue;
      }
      if (t.node === null) continue;
      if (t.state === 'PENDING') {
        // Appended in place: copying the list per task made a sweep over 100,000 pending tasks of
        // one node quadratic (minutes of CPU, the event loop blocked; issue 17).
        const list = unsent.get(t.node);
        if (list) list.push(t.id);
        else unsent.set(t.node, [t.id]);
      }
      if (now - since < deadlineMs) continue;
      if (t.state === 'PENDING' && (await this.queue.withdraw(t.node, t.id))) {
        log.warn({ taskId: t.id, node: t.node }, 'task not taken within the agent deadline: failed');
        await tasks.complete(t.id, notRespondingFailure(t.node));
      } else if (this.#silentFor(t.node) >= deadlineMs) {
        log.warn({ taskId: t.id, node: t.node }, 'agent of a running task stopped heartbeating: failed');
        await tasks.complete(t.id, silentNodeFailure(t.node, this.opts.deadlineS));
      }
    }
    await this.#sendMissing(unsent);
  }

  /**
   * Pending tasks seen on two ticks that have no job at all were committed but never reached their
   * queue (the send failed after the commit): send them now. A task with any job, even a finished
   * one whose result is still on its way, is left alone.
   */
  async #sendMissing(pending: Map<string, string[]>): Promise<void> {
    for (const [node, ids] of pending) {
      const known = await this.queue.knownTasks(node, ids);
      const missing = ids.filter((id) => !known.has(id));
      if (missing.length === 0) continue;
      const rows = await this.ctx.db.selectFrom('task').select(['id', 'kind', 'payload']).where('id', 'in', missing).where('state', '=', 'PENDING').execute();
      for (const t of rows) {
        this.ctx.log.warn({ taskId: t.id, node }, 'pending task had never reached its queue: sending it');
        await this.queue.send(node, { taskId: t.id, kind: t.kind, payload: JSON.parse(t.payload) as unknown });
      }
    }
  }
}
