/**
 * What cluster agents send the servers, on pg-boss queues the servers consume. Agents never touch
 * esnap's tables; these messages are their whole voice:
 *
 * - `esnap.register`: `register` when an agent starts (node, storages and their sizes, its SSH
 *   address and keys, whether it is a backup node; the servers answer every node with a `trust`
 *   control message, src/transport/trust.service.ts), then
 *   `heartbeat` every ESNAP_NODE_SILENCE_S / 3 seconds, and `usage` with the storages' fresh size
 *   and free bytes after tasks that change them and every minute (src/nodes/storage.usage.ts).
 *   With ESNAP_HYPERVISOR=libvirt, `domains` with the node's domain inventory; the server applying
 *   it answers with a `libvirt_skips` control message (the skipped domains, for the agent's /readyz:
 *   src/hypervisor/libvirt.skips.ts).
 * - `esnap.results`: `started` when the agent has taken a task's job (the job's move to `active`
 *   in pg-boss is the claim: from then on the task can no longer be withdrawn or cancelled), and
 *   `finished` with the outcome. `interrupted` marks a failure the agent reports for a job it found
 *   active at its own start: the previous agent died while running it, so its disks are re-synced.
 */
import type { StorageReport, StorageUsage } from '../nodes/node.repository.js';
import type { TaskOutcome } from '../tasks/task.types.js';
import type { DomainInventory } from '../hypervisor/libvirt.inventory.js';
import type { SshRegistration } from '../transport/trust.service.js';

export type RegisterMessage =
  | {
      readonly type: 'register';
      readonly node: string;
      readonly storages: readonly StorageReport[];
      readonly at: string;
      /** The node's SSH side for backups (src/transport/trust.service.ts); absent from older agents. */
      readonly ssh?: SshRegistration;
      /** ESNAP_BACKUP_NODE: whether this node's storages may hold backups. */
      readonly backup?: boolean;
    }
  | { readonly type: 'heartbeat'; readonly node: string; readonly at: string }
  | { readonly type: 'usage'; readonly node: string; readonly storages: readonly StorageUsage[]; readonly at: string }
  // ESNAP_HYPERVISOR=libvirt: the node's full domain inventory (src/hypervisor/libvirt.inventory.ts).
  | ({ readonly type: 'domains' } & DomainInventory);

export type ResultMessage =
  | { readonly type: 'started'; readonly node: string; readonly taskId: string; readonly at: string }
  | {
      readonly type: 'finished';
      readonly node: string;
      readonly taskId: string;
      readonly outcome: TaskOutcome;
      readonly interrupted?: boolean;
      readonly at: string;
    };

export const INTERRUPTED_MESSAGE = 'Task was interrupted (the agent stopped while it ran)';
