/**
 * Backup engines, one per backup type, run by the backup node's agent: type 2 (file) is restic
 * (engine.restic.ts); type 1 (dataset: zfs/btrfs send and receive) is registered by the native
 * engine. Each gets the payload and the node's means (runner, storage roots, key folder, the
 * Transfer to the disk's node) and returns what the completion records.
 */
import type { Logger } from '../app-context.js';
import { StorageError } from '../storage/driver.js';
import type { CommandRunner } from '../storage/runner.js';
import type { BackupCreated, BackupPayload, BackupPresent, BackupRestored, BackupVerified } from './backup.payloads.js';
import type { TransferFor } from './transfer.js';
import type { StorageConfig } from '../storage/drivers.js';
import type { SshAddress } from '../transport/ssh-address.js';

export interface BackupAgentIo {
  readonly node: string;
  readonly runner: CommandRunner;
  readonly log: Logger;
  readonly transferFor: TransferFor;
  /** Root folders of this node's storages that have one. */
  readonly roots: ReadonlyMap<string, string>;
  /** ESNAP_DATA_DIR/backup-keys; null: this node cannot hold type 2 backups. */
  readonly keysDir: string | null;
  readonly freezeLimitMs?: number;
  /** This node's storages as configured (type 1 needs a zfs storage's dataset, not only roots). */
  readonly storageConfigs?: ReadonlyMap<string, StorageConfig>;
  /** The node's SSH side (cluster mode): its key folder and where other nodes' sshd are. */
  readonly ssh?: SshSide | null;
}

/** What the backup engines need of an agent's SSH side (src/transport/agent-ssh.ts). */
export interface SshSide {
  readonly dir: string;
  addressOf(node: string): SshAddress | null;
}

type Op<K extends BackupPayload['op']> = Extract<BackupPayload, { op: K }>;

export interface BackupEngine {
  create(p: Op<'backup_create'>, io: BackupAgentIo): Promise<BackupCreated & { detail?: string }>;
  /** Writes the backup into the target disk (crash-safe through the target's driver). */
  restore(p: Op<'backup_restore'>, io: BackupAgentIo): Promise<BackupRestored>;
  /** Re-reads the backup; `ok: false` when its SHA-256 differs or it cannot be read. */
  verify(p: Op<'backup_verify'>, io: BackupAgentIo): Promise<BackupVerified>;
  remove(p: Op<'backup_delete'>, io: BackupAgentIo): Promise<void>;
  /** Removes what a failed or interrupted create left (its source snapshot, partial data). */
  cleanup(p: Op<'backup_cleanup'>, io: BackupAgentIo): Promise<void>;
  /** Which of the named backups the storage still holds; throws when the storage cannot be read. */
  present(p: Op<'backup_check'>, io: BackupAgentIo): Promise<BackupPresent>;
}

const ENGINES = new Map<number, BackupEngine>();

export function registerEngine(type: number, engine: BackupEngine): void {
  ENGINES.set(type, engine);
}

export function engineFor(type: number): BackupEngine {
  const e = ENGINES.get(type);
  if (!e) throw new StorageError('backend', `Backup type ${type} is not supported by this agent`);
  return e;
}
