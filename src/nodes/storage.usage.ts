/**
 * Keeping node_storage.size / size_free current, which the free-space floor
 * (src/snapshots/capacity.ts), the storage views and /metrics read.
 *
 * The design, the simplest that keeps the value right without a statfs (or a `zfs get`) on every
 * API request: the agent, the only one that can read its storages, reports their usage
 * - after every task that changes a storage (create, delete, rollback/restore, disk create and
 *   delete), for the storages that task touched, before it reports the task's outcome: in embedded
 *   mode the row is updated before the task ends, so a request made after a delete that freed
 *   space already sees the space; and
 * - every USAGE_REFRESH_S seconds for all its storages, which catches what esnap does not do
 *   itself: guests filling their disks, files removed by an operator.
 * Where the report goes is the reporter's business: the embedded agent writes the row directly;
 * a cluster agent sends a `usage` message on the registration queue, which every server consumes
 * like heartbeats (in cluster mode a request right after a task may therefore see the previous
 * numbers for a moment). It is a message of its own rather than part of the heartbeat, so a slow
 * storage read can never delay a heartbeat and make a live node look unreachable.
 */
import type { Logger } from '../app-context.js';
import type { Agent } from '../agent/agent.js';
import type { AgentPayload } from '../agent/payloads.js';
import { Ticker } from '../lib/ticker.js';

/** Seconds between the periodic usage reports of an agent. */
export const USAGE_REFRESH_S = 60;

/**
 * The storages whose usage a task can change; none for `list`, `noop` or a payload the agent could
 * not make sense of (it takes the payload as it came off the queue, so this never throws).
 *
 * @example storagesTouched({ op: 'destroy', storage: 'zones', disk, ids: ['es-1'] }) // ['zones']
 */
export function storagesTouched(payload: unknown): string[] {
  const p = payload as AgentPayload | null | undefined;
  switch (p?.op) {
    case 'create':
    case 'disk_delete':
      return Array.isArray(p.items) ? [...new Set(p.items.map((i) => i.storage))] : [];
    case 'destroy':
    case 'rollback':
    case 'disk_create':
    case 'backup_create':
    case 'backup_delete':
      return [p.storage];
    default:
      return [];
  }
}

/** Starts the periodic usage report of `agent`; stop() the returned loop before the queue. */
export function startUsageRefresh(agent: Agent, log: Logger, everyS = USAGE_REFRESH_S): Ticker {
  const t = new Ticker('storage usage', everyS * 1000, () => agent.reportUsage(), log);
  t.start();
  return t;
}
