/**
 * An agent's SSH side (cluster mode): at start, its key pair and the node's host key (what goes
 * into the registration message) and the forced command's serve.json; afterwards, the control
 * messages the servers send on the node's queue: `trust` rewrites authorized_keys and known_hosts,
 * `announce`/`withdraw` record and drop restores this node may receive.
 *
 * It also knows, from the last trust set, where every other node's sshd is: what the backup
 * engines need to open SSH to a source node (`addressOf`).
 *
 * Example:
 *   const ssh = await AgentSsh.start(runner, { dir, node, address, storages }, log);
 *   register({ ..., ssh: ssh.registration });
 *   agent.control = (msg) => ssh.control(msg);
 */
import { fileURLToPath } from 'node:url';
import type { Logger } from '../app-context.js';
import type { QueueMessage } from '../queue/queue.js';
import type { StorageConfig } from '../storage/drivers.js';
import type { CommandRunner } from '../storage/runner.js';
import { announce, withdrawAnnouncement, type Announcement } from './announcements.js';
import { formatSshAddress, type SshAddress } from './ssh-address.js';
import { ensureIdentity, readHostKey } from './ssh-identity.js';
import { applyTrust, forcedCommand, readTrustedHosts, trustedHosts, writeServeConfig, type ServeConfig, type TrustSet } from './trust-files.js';
import type { SshRegistration } from './trust.service.js';

export interface AgentSshOptions {
  /** ESNAP_SSH_DIR. */
  readonly dir: string;
  readonly node: string;
  /** ESNAP_NODE_ADDRESS. */
  readonly address: SshAddress;
  readonly storages: readonly StorageConfig[];
  /** The entry script sshd runs as the forced command (default: this build's bin/esnap-ssh-serve.js). */
  readonly serveScript?: string;
  /** serve.json's announceWaitMs (tests shorten it; default ANNOUNCE_WAIT_MS). */
  readonly announceWaitMs?: number;
  /** serve.json's freezeLimitMs: ESNAP_FREEZE_LIMIT_S for the freezes the forced command does. */
  readonly freezeLimitMs?: number;
}

export class AgentSsh {
  #hosts = new Map<string, SshAddress>();

  private constructor(
    readonly registration: SshRegistration,
    readonly serveConfig: ServeConfig,
    private readonly command: string,
    private readonly opts: AgentSshOptions,
    private readonly log: Logger,
  ) {}

  static async start(runner: CommandRunner, opts: AgentSshOptions, log: Logger): Promise<AgentSsh> {
    const script = opts.serveScript ?? fileURLToPath(new URL('../bin/esnap-ssh-serve.js', import.meta.url));
    // Checked first: a path the forced command cannot hold stops the start, before any key exists.
    const command = forcedCommand(process.execPath, script, opts.dir);
    const publicKey = await ensureIdentity(runner, opts.dir, opts.node);
    let hostKey: string | null = null;
    try {
      hostKey = await readHostKey(runner, opts.dir, opts.address);
    } catch (err) {
      // The node still works and can be a backup node; it cannot be a backup source until it has one.
      log.warn({ err: (err as Error).message }, 'no SSH host key for ESNAP_NODE_ADDRESS: backup nodes cannot reach this node');
    }
    const serveConfig = await writeServeConfig(opts.dir, opts.node, opts.storages, opts.announceWaitMs, opts.freezeLimitMs);
    const side = new AgentSsh({ address: formatSshAddress(opts.address), publicKey, hostKey }, serveConfig, command, opts, log);
    // The last trust set's addresses, until the servers send the next: a restarted agent's first
    // jobs (the cleanup of a backup it was killed in) may come before that (trust-files.ts).
    side.#hosts = await readTrustedHosts(opts.dir);
    return side;
  }

  /** Where a node's sshd is, from the last trust set (also one applied before a restart); null when it registered none. */
  addressOf(node: string): SshAddress | null {
    return this.#hosts.get(node) ?? null;
  }

  get dir(): string {
    return this.opts.dir;
  }

  /** Applies one control message (trust, announce, withdraw). */
  async control(msg: QueueMessage): Promise<void> {
    switch (msg.kind) {
      case 'trust': {
        const trust = msg.payload as TrustSet;
        await applyTrust(this.opts.dir, trust, this.command);
        this.#hosts = trustedHosts(trust.hosts);
        this.log.info({ backupKeys: trust.backupKeys.map((k) => k.node), hosts: trust.hosts.length }, 'SSH trust updated');
        return;
      }
      case 'announce':
        await announce(this.serveConfig.announcedDir, msg.payload as Announcement);
        return;
      case 'withdraw':
        await withdrawAnnouncement(this.serveConfig.announcedDir, (msg.payload as { taskId: string }).taskId);
        return;
    }
  }
}
