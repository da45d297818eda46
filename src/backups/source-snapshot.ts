/**
 * The source snapshot `is-<id>` of a backup, with the guest frozen around it when the definition
 * asks (fsfreeze), for both engines. The guest agent's socket lives on the VM's node:
 *
 * - the disk on this node: this agent freezes through the socket (withFreeze) around the snapshot;
 * - the disk on another node: the server announced the freeze of this task to that node
 *   (`freeze.task`), and its forced command freezes around the snapshot it takes there
 *   (`snapshot … freeze <task id>`, src/transport/ssh-serve.ts) and says when the freeze did not
 *   hold; a payload without the announcement (queued by an older server) is taken unfrozen and
 *   says so.
 *
 * As for snapshots, a failed freeze never stops the backup: the snapshot is taken unfrozen and the
 * returned message (Danube's `Filesystem freeze failed (…)`) goes into the task's detail.
 */
import { withFreeze, DEFAULT_FREEZE_LIMIT_MS } from '../guest/freeze.js';
import type { BackupAgentIo } from './engine.js';
import type { BackupPayload } from './backup.payloads.js';

type CreatePayload = Extract<BackupPayload, { op: 'backup_create' }>;

/** `take(freezeTask)`: takes the snapshot, on the other node frozen for that announced task. */
export type TakeSnapshot = (freezeTask?: string) => Promise<{ freezeError: string | null }>;

/** Takes the snapshot; resolves with why it was not taken frozen throughout, or null. */
export async function takeSourceSnapshot(p: CreatePayload, io: BackupAgentIo, take: TakeSnapshot): Promise<string | null> {
  if (!p.freeze) return (await take()).freezeError;
  if (p.source.node !== io.node) {
    if (p.freeze.task === undefined) {
      await take();
      return `fsfreeze of a VM on node ${p.source.node} is not possible from backup node ${io.node}`;
    }
    return (await take(p.freeze.task)).freezeError;
  }
  const r = await withFreeze({ socket: p.freeze.socket, limitMs: io.freezeLimitMs ?? DEFAULT_FREEZE_LIMIT_MS, log: io.log }, () => take());
  return r.error ?? null;
}
