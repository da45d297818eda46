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
 *
 * A pass reads only what it needs (issue 17: reading every open task on every pass was 81 × 247 ms
 * in a slot of 100,000 tasks): the tasks opened since its last read, found through the inserting
 * transaction's id (`task.open_xid`, migration 0011) at or above that read's snapshot horizon,
 * which no task committed later can be below (the first pass reads every open task); and, by id,
 * the tasks it knows that are past their deadline or were new on the previous pass (their queue
 * job is checked once, step 4). Tasks not yet due are not read again until they are.
 */
import type { AppContext } from '../app-context.js';
import { failure } from './task.service.js';
import { markUnreachable } from '../nodes/node.heartbeat.js';
import { NODE_ONLINE } from '../nodes/node.repository.js';
import type { PgBossQueue } from '../queue/pgboss.queue.js';
import { Ticker } from '../lib/ticker.js';
import { sql } from 'kysely';
import { inChunk, inValues } from '../db/bulk.js';

const OPEN = ['PENDING', 'STARTED'];
type OpenTask = { id: string; state: string; node: string | null };

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
  /** Tasks first seen on the last pass (their queue job is checked on this one). */
  #fresh = new Set<string>();
  /** The snapshot horizon (xid8) of the last read of new tasks; null before the first. */
  #horizon: string | null = null;

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

    const deadlineMs = this.opts.deadlineS * 1000;
    // Known tasks to look at again: past their deadline, or new on the last pass.
    const recheck = [...this.#open].filter(([id, since]) => now - since >= deadlineMs || this.#fresh.has(id)).map(([id]) => id);
    const open = await this.#openByIds(recheck);
    const stillOpen = new Set(open.map((t) => t.id));
    for (const id of recheck) if (!stillOpen.has(id)) this.#open.delete(id);
    const fresh = new Set<string>();
    for (const t of await this.#openedSince()) {
      if (this.#open.has(t.id)) continue;
      this.#open.set(t.id, now);
      fresh.add(t.id);
    }
    this.#fresh = fresh;
    const unsent = new Map<string, string[]>();
    for (const t of open) {
      const since = this.#open.get(t.id)!;
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

  /** Of `ids`, the tasks still open. */
  async #openByIds(ids: readonly string[]): Promise<OpenTask[]> {
    const { db } = this.ctx;
    const out: OpenTask[] = [];
    const size = inChunk(db);
    for (let i = 0; i < ids.length; i += size) {
      out.push(...(await db.selectFrom('task').select(['id', 'state', 'node']).where(inValues(db, 'id', ids.slice(i, i + size), 'text')).where('state', 'in', OPEN).execute()));
    }
    return out;
  }

  /**
   * Open tasks inserted since the last call (all open tasks on the first). The horizon is read
   * before the tasks, in a statement of its own: a task this read does not see was inserted by a
   * transaction still running or not yet begun when the horizon's snapshot was taken, so its id is
   * at or above that horizon (snapshot horizons only move forward), and the next call finds it.
   */
  async #openedSince(): Promise<OpenTask[]> {
    const { db } = this.ctx;
    const horizon = (await sql<{ x: string }>`SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x`.execute(db)).rows[0]!.x;
    let q = db.selectFrom('task').select(['id', 'state', 'node']).where('state', 'in', OPEN);
    if (this.#horizon !== null) q = q.where('open_xid', '>=', sql<string>`${this.#horizon}::xid8`);
    const rows = await q.execute();
    this.#horizon = horizon;
    return rows;
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
