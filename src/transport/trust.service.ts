/**
 * The servers' side of SSH trust between nodes. Agents never write esnap's tables: they send their
 * SSH identity in the registration message, and a server records it here, then hands every node
 * the current trust set (the backup nodes' public keys, every node's sshd address and host key)
 * as a `trust` control message on the node's queue (src/agent/control.ts). A node that registers
 * gets it too, so a restarted agent rewrites its files from the database's view.
 *
 * Restores are announced the same way: `announce` to the target node before the restore task is
 * queued on the backup node, `withdraw` once it ended (src/transport/announcements.ts); so are
 * backups with fsfreeze of a VM on another node (the announcement names the guest agent socket).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { AppContext, Logger } from '../app-context.js';
import { normalizePublicKey } from './ssh-identity.js';
import { formatSshAddress, parseSshAddress } from './ssh-address.js';
import type { TrustSet } from './trust-files.js';
import type { Announcement } from './announcements.js';
import type { SkipReport } from '../hypervisor/libvirt.skips.js';

/** What an agent says about its node's SSH side in its `register` message. */
export interface SshRegistration {
  /** ESNAP_NODE_ADDRESS, `user@host:port`. */
  readonly address: string;
  /** The agent's ed25519 public key. */
  readonly publicKey: string;
  /** The node's sshd host key; null when the agent could not read it (the node cannot be a backup source). */
  readonly hostKey: string | null;
}

/** Control messages on a node's queue: not tasks (no task row, no started/finished). */
export type ControlMessage =
  | { readonly kind: 'trust'; readonly taskId: ''; readonly payload: TrustSet }
  // taskId `announce:<restore task id>` / `withdraw:<…>`: a job id of its own on the node's queue.
  | { readonly kind: 'announce'; readonly taskId: string; readonly payload: Announcement }
  | { readonly kind: 'withdraw'; readonly taskId: string; readonly payload: { readonly taskId: string } }
  // The node's skipped libvirt domains after a server applied its inventory (src/hypervisor/libvirt.skips.ts SKIPS_KIND).
  | { readonly kind: 'libvirt_skips'; readonly taskId: ''; readonly payload: SkipReport };

export const CONTROL_KINDS: ReadonlySet<string> = new Set(['trust', 'announce', 'withdraw', 'libvirt_skips']);

/** Sends a control message to one node's queue (pg-boss: `publishReliably` of the node queue). */
export type SendControl = (node: string, msg: ControlMessage) => Promise<void>;

/**
 * Records a node's SSH identity and backup role from its registration. Values that are not what
 * esnap itself would send are dropped (logged), never stored: they end up in other nodes' files.
 */
export async function recordSsh(db: Kysely<Database>, hostname: string, ssh: SshRegistration | undefined, backup: boolean | undefined, log: Logger): Promise<void> {
  const set: { ssh_address?: string; ssh_public_key?: string; ssh_host_key?: string | null; is_backup?: number } = {};
  if (backup !== undefined) set.is_backup = backup ? 1 : 0;
  if (ssh) {
    const address = parseSshAddress(ssh.address);
    const publicKey = normalizePublicKey(ssh.publicKey);
    const hostKey = ssh.hostKey === null ? null : normalizePublicKey(ssh.hostKey);
    if (address === null || publicKey === null || (ssh.hostKey !== null && hostKey === null)) {
      log.warn({ node: hostname }, 'registration has an SSH address or key esnap cannot use: ignored');
    } else {
      set.ssh_address = formatSshAddress(address);
      set.ssh_public_key = publicKey;
      set.ssh_host_key = hostKey;
    }
  }
  if (Object.keys(set).length > 0) await db.updateTable('node').set(set).where('hostname', '=', hostname).execute();
}

/** The trust set of the cluster as recorded. */
export async function trustSet(db: Kysely<Database>): Promise<TrustSet> {
  const rows = await db
    .selectFrom('node')
    .select(['hostname', 'is_backup', 'ssh_address', 'ssh_public_key', 'ssh_host_key'])
    .where('ssh_address', 'is not', null)
    .orderBy('hostname')
    .execute();
  return {
    backupKeys: rows.filter((r) => r.is_backup === 1 && r.ssh_public_key).map((r) => ({ node: r.hostname, publicKey: r.ssh_public_key! })),
    hosts: rows.filter((r) => r.ssh_host_key).map((r) => ({ node: r.hostname, address: r.ssh_address!, hostKey: r.ssh_host_key! })),
  };
}

/** Hands the trust set to every node with an SSH identity. */
export async function broadcastTrust(db: Kysely<Database>, send: SendControl): Promise<void> {
  const trust = await trustSet(db);
  const nodes = await db.selectFrom('node').select('hostname').where('ssh_address', 'is not', null).execute();
  for (const n of nodes) await send(n.hostname, { kind: 'trust', taskId: '', payload: trust });
}

/** The node's sshd address and host key, as a backup node's agent needs them in a task payload. */
export async function sshEndpoint(db: Kysely<Database>, hostname: string): Promise<{ address: string; hostKey: string } | null> {
  const r = await db.selectFrom('node').select(['ssh_address', 'ssh_host_key']).where('hostname', '=', hostname).executeTakeFirst();
  return r?.ssh_address && r.ssh_host_key ? { address: r.ssh_address, hostKey: r.ssh_host_key } : null;
}

/** How long an announced restore may write its disk when no end message comes. */
export const ANNOUNCE_HOURS = 24;

/**
 * Allows the restore task `a.taskId` to write disk `a.disk` on `node` through its forced command
 * (sent before the task reaches the backup node's queue). Embedded mode has no SSH: nothing to do.
 */
export async function announceRestore(ctx: AppContext, node: string, a: Announcement): Promise<void> {
  await ctx.tasks.sendControl(node, { kind: 'announce', taskId: `announce:${a.taskId}`, payload: a });
}

/** Ends what announceRestore allowed (the task ended); failures only leave it until it expires. */
export async function withdrawRestore(ctx: AppContext, node: string, taskId: string): Promise<void> {
  await ctx.tasks.sendControl(node, { kind: 'withdraw', taskId: `withdraw:${taskId}`, payload: { taskId } }).catch((err: unknown) => {
    ctx.log.warn({ err, node, taskId }, 'could not withdraw a restore announcement (it expires by itself)');
  });
}
