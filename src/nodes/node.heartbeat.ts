/**
 * Node liveness in cluster mode: the servers consume agents' `register` and `heartbeat` messages
 * (`esnap.register`), and mark a node whose heartbeats stopped `unreachable`, so node-bound
 * operations answer 423 `Node is not operational` (requireNodeOnline reads node.status).
 */
import type { Kysely } from 'kysely';
import type { AppContext } from '../app-context.js';
import type { Database } from '../db/schema.js';
import type { RegisterMessage } from '../agent/cluster.messages.js';
import { nodeQueueName, REGISTER_QUEUE, type PgBossQueue } from '../queue/pgboss.queue.js';
import { NODE_ONLINE, registerNode, updateStorageUsage } from './node.repository.js';
import { Ticker } from '../lib/ticker.js';
import { applyInventory } from '../hypervisor/libvirt.rows.js';
import { broadcastTrust, recordSsh, type ControlMessage } from '../transport/trust.service.js';

export const NODE_UNREACHABLE = 3;

/**
 * Records a heartbeat: the value the agent sent, and an `unreachable` node is online again (a
 * node in maintenance stays there). Liveness is judged by the sweep from the value changing, not
 * by comparing this time with another machine's clock, so the agent's own time is stored as is.
 */
export async function touchNode(db: Kysely<Database>, hostname: string, at: string): Promise<void> {
  await db
    .updateTable('node')
    .set((eb) => ({
      last_heartbeat: at,
      status: eb.case().when('status', '=', NODE_UNREACHABLE).then(NODE_ONLINE).else(eb.ref('status')).end(),
    }))
    .where('hostname', '=', hostname)
    .execute();
}

/**
 * Marks an online node unreachable, unless a heartbeat arrived since the caller read `lastBeat`.
 * Returns whether it did.
 */
export async function markUnreachable(db: Kysely<Database>, hostname: string, lastBeat: string | null): Promise<boolean> {
  const res = await db
    .updateTable('node')
    .set({ status: NODE_UNREACHABLE })
    .where('hostname', '=', hostname)
    .where('status', '=', NODE_ONLINE)
    .where((eb) => (lastBeat === null ? eb('last_heartbeat', 'is', null) : eb('last_heartbeat', '=', lastBeat)))
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

/**
 * Consumes registrations, heartbeats and storage usage: records the node and its storages, creates
 * its queue, and keeps the storages' size and free bytes current.
 */
export async function consumeRegistrations(ctx: AppContext, queue: PgBossQueue): Promise<void> {
  await queue.consume(
    REGISTER_QUEUE,
    async (data) => {
      const m = data as RegisterMessage;
      const now = ctx.clock.now();
      if (m.type === 'register') {
        await queue.createQueue(nodeQueueName(m.node), 'node');
        await registerNode(ctx.db, m.node, m.storages, now.toISOString());
        await recordSsh(ctx.db, m.node, m.ssh, m.backup, ctx.log);
        // Every node learns the new keys and host keys (this one gets the whole set it needs).
        await broadcastTrust(ctx.db, (node, msg) => queue.publishReliably(nodeQueueName(node), msg));
        ctx.log.info({ node: m.node, storages: m.storages.map((s) => s.name) }, 'node registered');
      } else if (m.type === 'domains') {
        const r = await applyInventory(ctx, m);
        // The agent's /readyz shows its node's skips: a full inventory always answers (a restarted
        // agent, or one another server answered last, learns the current list within a resync), a
        // partial one when the list changed.
        if (!r.stale && (!m.partial || r.changed)) {
          await queue.createQueue(nodeQueueName(m.node), 'node');
          const msg: ControlMessage = { kind: 'libvirt_skips', taskId: '', payload: { at: m.at, skipped: r.conflicts } };
          await queue.publishReliably(nodeQueueName(m.node), msg).catch((err: unknown) => {
            ctx.log.warn({ err, node: m.node }, 'could not send the libvirt skip list to the agent');
          });
        }
      } else if (m.type === 'usage') {
        await updateStorageUsage(ctx.db, m.node, m.storages);
      } else {
        await touchNode(ctx.db, m.node, m.at);
      }
    },
    // A heartbeat is worth nothing once applied: delete it rather than archive it.
    { concurrency: 2, discard: true },
  );
}

/**
 * The heartbeat of an agent that runs inside a server: it has the database, so it writes the node
 * row directly. It writes the wall-clock time, like a remote agent: liveness is real time between
 * processes, not the injected clock that tests move or stop.
 */
export function localHeartbeat(ctx: AppContext, node: string, silenceS: number): Ticker {
  const t = new Ticker('local heartbeat', (silenceS * 1000) / 3, () => touchNode(ctx.db, node, new Date().toISOString()), ctx.log);
  t.start();
  return t;
}
