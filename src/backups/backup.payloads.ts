/** What the server sends a backup node's agent for backups, and what it reports back. */
import type { DiskEnd } from './transfer.js';

/**
 * Where a backup lives on the backup node: its storage and the row's `file_path` (type 2: the file
 * name inside restic's snapshot `resticId`; type 1: `dataset@is-<n>` or a folder, the engine's own).
 */
export interface BackupLocation {
  readonly storage: string;
  readonly resticId: string | null;
  readonly filename: string;
}
/** @deprecated the type 2 name of BackupLocation. */
export type ResticLocation = BackupLocation;

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
      /**
       * fsfreeze: the VM's guest agent socket on its node; `task` (the disk on another node): this
       * backup task, whose freeze the server announced to that node (source-snapshot.ts).
       */
      readonly freeze?: { readonly socket: string; readonly task?: string };
      /** Type 1: the newest backup's base snapshot on the source disk (`is-<m>`), for an incremental send. */
      readonly base?: string | null;
      /** Type 1: that backup's location (`<dataset>/<chain>@is-<m>`), which names the chain to receive into. */
      readonly baseFile?: string;
      /** The definition's compression (Danube's 0 none, 1 gzip, 2 bzip2, 3 xz); absent: the engine's default. */
      readonly compression?: number | null;
      /** The definition's bwlimit in bytes per second; null or absent: no limit. */
      readonly bwlimit?: number | null;
    }
  | {
      readonly op: 'backup_restore';
      readonly backupId: number;
      readonly type: number;
      readonly from: ResticLocation;
      readonly checksum: string;
      readonly target: DiskEnd;
      readonly taskId: string;
      /**
       * The target storage's driver. A dataset backup whose driver can replace a disk of it by a
       * native stream (native-streams.ts datasetRestoreSupported) is restored so (on zfs the
       * disk's snapshots go with its old dataset: BackupRestored.snapshotsGone); absent: the image path.
       */
      readonly targetDriver?: string;
    }
  | { readonly op: 'backup_verify'; readonly backupId: number; readonly type: number; readonly from: ResticLocation; readonly checksum: string }
  /**
   * After a failed or interrupted create: the source snapshot `is-<id>` goes (type 2), and whatever
   * restic stored under the backup's tag `bkp:<id>` is forgotten. Missing pieces are fine.
   */
  | { readonly op: 'backup_cleanup'; readonly backupId: number; readonly type: number; readonly source: DiskEnd; readonly snapshot: string; readonly storage: string }
  /**
   * After a delete that failed or whose end is uncertain (its agent killed, its deadline passed):
   * which of its backups the storage still holds (BackupPresent). Reads only.
   */
  | { readonly op: 'backup_check'; readonly type: number; readonly storage: string; readonly resticIds: readonly string[]; readonly items?: readonly BackupLocation[] }
  | {
      readonly op: 'backup_delete';
      readonly type: number;
      readonly storage: string;
      readonly resticIds: readonly string[];
      /** Every backup's location (type 1 engines delete by file_path). */
      readonly items?: readonly BackupLocation[];
    };

/** `backup_create` data. */
export interface BackupCreated {
  /** Type 2: restic's snapshot id; type 1: null. */
  readonly resticId: string | null;
  /** The row's file_path (type 2: the file name in the restic snapshot). */
  readonly filePath?: string;
  /** Type 1: the `is-<n>` snapshot kept on the source disk as the next incremental's base. */
  readonly baseSnapshot?: string | null;
  readonly checksum: string;
  readonly size: number;
  readonly added: number | null;
  readonly seconds: number;
}

/** `backup_restore` data. */
export interface BackupRestored {
  /** The target disk was replaced by a native stream (zfs dataset, btrfs subvolume). */
  readonly replaced: boolean;
  /** Its snapshots went with the old one (zfs): their rows go too. */
  readonly snapshotsGone?: boolean;
}

/** `backup_check` data: the restic ids (type 2) and file names (type 1) still stored. */
export interface BackupPresent {
  readonly resticIds: readonly string[];
  readonly filenames: readonly string[];
}

/** `backup_verify` data. */
export interface BackupVerified {
  readonly ok: boolean;
  readonly checksum: string | null;
  readonly error?: string;
}
