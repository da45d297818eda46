/** What the server sends a backup node's agent for backups, and what it reports back. */
import type { DiskEnd } from './transfer.js';

/** Where a type 2 backup lives: the backup storage, restic's snapshot, the file name inside it. */
export interface ResticLocation {
  readonly storage: string;
  readonly resticId: string;
  readonly filename: string;
}

export type BackupPayload =
  | {
      readonly op: 'backup_create';
      readonly backupId: number;
      readonly type: number;
      readonly source: DiskEnd;
      /** The snapshot read (`is-<backupId>`), taken and (type 2) destroyed by the task. */
      readonly snapshot: string;
      /** The backup storage on this node. */
      readonly storage: string;
      readonly filename: string;
      readonly tags: readonly string[];
      readonly freeze?: { readonly socket: string };
    }
  | {
      readonly op: 'backup_restore';
      readonly backupId: number;
      readonly type: number;
      readonly from: ResticLocation;
      readonly checksum: string;
      readonly target: DiskEnd;
      readonly taskId: string;
    }
  | { readonly op: 'backup_verify'; readonly backupId: number; readonly type: number; readonly from: ResticLocation; readonly checksum: string }
  | { readonly op: 'backup_delete'; readonly type: number; readonly storage: string; readonly resticIds: readonly string[] };

/** `backup_create` data. */
export interface BackupCreated {
  readonly resticId: string;
  readonly checksum: string;
  readonly size: number;
  readonly added: number | null;
  readonly seconds: number;
}

/** `backup_verify` data. */
export interface BackupVerified {
  readonly ok: boolean;
  readonly checksum: string | null;
  readonly error?: string;
}
