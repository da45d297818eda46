/** The backup tables of migration 0007, kept beside the backup code (src/db/schema.ts re-exports them). */
import type { Generated, Selectable } from 'kysely';

export interface BackupDefineTable {
  id: Generated<number>;
  vm_uuid: string;
  disk_real_id: number;
  name: string;
  type: number; // 1 dataset, 2 file
  node_id: number;
  storage_id: number;
  desc: string;
  bwlimit: number | null;
  schedule: string;
  retention: number;
  active: number;
  compression: number;
  fsfreeze: number;
  tz: string;
  /** Migration 0009: 1 fires the most recent missed slot once after downtime, 0 skips a late slot. */
  catchup: Generated<number>;
  next_run: string | null;
  last_run: string | null;
  last_success: string | null;
  last_error: string | null;
  created: string;
  changed: string;
}

export interface BackupTable {
  id: Generated<number>;
  dc_id: number;
  vm_uuid: string | null;
  vm_hostname: string;
  vm_disk_id: number;
  disk_real_id: number;
  disk_size_mb: number;
  define_id: number | null;
  name: string;
  status: number; // 1 ok, 2 pending, 3 restore, 4 lost, 5 damaged
  type: number;
  node_id: number;
  node_hostname: string;
  storage_id: number;
  storage_name: string;
  storage_driver: string;
  source_node_hostname: string;
  source_storage_name: string;
  source_storage_driver: string;
  file_path: string;
  restic_id: string | null;
  base_snapshot: string | null;
  checksum: string;
  size: number | null;
  time: number | null;
  note: string;
  last: number;
  fsfreeze: number;
  task_id: string | null;
  status_change: string | null;
  created: string;
  changed: string;
}

export type BackupDefineRow = Selectable<BackupDefineTable>;
export type BackupRow = Selectable<BackupTable>;

export const BACKUP_OK = 1;
export const BACKUP_PENDING = 2;
export const BACKUP_RESTORE = 3;
export const BACKUP_LOST = 4;
export const BACKUP_DAMAGED = 5;
