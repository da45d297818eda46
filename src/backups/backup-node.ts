/**
 * Which nodes are backup nodes (`node.is_backup`, design: ESNAP_BACKUP_NODE). In embedded mode the
 * server's own node is one (it backs up to its own second storage); cluster agents will say so in
 * their registration message (not yet: issue 15's cluster part).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { StorageConfig } from '../storage/drivers.js';

export async function markBackupNode(db: Kysely<Database>, hostname: string, isBackup: boolean): Promise<void> {
  await db.updateTable('node').set({ is_backup: isBackup ? 1 : 0 }).where('hostname', '=', hostname).execute();
}

/** Root folders of the storages that have one (a restic repository lives below it). */
export function storageRoots(storages: readonly StorageConfig[]): Map<string, string> {
  return new Map(storages.flatMap((s) => (s.root !== undefined ? [[s.name, s.root] as const] : [])));
}

/** Folder of the restic passwords under ESNAP_DATA_DIR (src/backups/restic.ts). */
export const BACKUP_KEYS_SUBDIR = 'backup-keys';
