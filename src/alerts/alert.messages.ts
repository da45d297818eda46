/**
 * The alerts of automatic snapshots: Danube's monitoring messages (spec 8.1, 8.4, 8.5), word for
 * word, plus esnap's "definition stale". Monitoring rules match on these texts.
 */

export type AlertPriority = 'ERROR' | 'WARNING';

export type AlertType =
  | 'snapshot_start_failed' // 8.1
  | 'retention_start_failed' // 8.4
  | 'snapshot_create_failed' // 8.5
  | 'snapshot_delete_failed' // 8.5
  | 'freeze_failed' // 8.5
  | 'definition_stale' // esnap
  | 'storage_full' // esnap
  | 'backup_create_failed' // Danube's backup callback alert
  | 'backup_delete_failed' // Danube's backup callback alert
  | 'backup_damaged'; // esnap: a verify found the backup's data changed

export interface Alert {
  readonly type: AlertType;
  readonly priority: AlertPriority;
  readonly message: string;
  readonly hostname: string;
  /** Array disk id (1-based). */
  readonly disk_id: number;
  readonly define: string | null;
  readonly snapnames: readonly string[];
}

/** An alert about one snapshot of a disk (8.5 and esnap's storage full share this body). */
function oneSnapshot(type: AlertType, priority: AlertPriority, message: string, hostname: string, diskId: number, name: string, define: string | null): Alert {
  return { type, priority, message, hostname, disk_id: diskId, define, snapnames: [name] };
}

export const alerts = {
  /** Danube's alert of a failed backup create or delete (snapnames: the backup's name). */
  backupFailed(hostname: string, diskId: number, name: string, define: string | null, action: 'created' | 'deleted'): Alert {
    const type = action === 'created' ? 'backup_create_failed' : 'backup_delete_failed';
    return oneSnapshot(type, 'ERROR', `Backup ${name} of server ${hostname}@disk-${diskId} could not be ${action}.`, hostname, diskId, name, define);
  },
  /** esnap: a verify re-read the backup and its SHA-256 differs from the one recorded (status 5). */
  backupDamaged(hostname: string, diskId: number, name: string, define: string | null): Alert {
    return oneSnapshot('backup_damaged', 'ERROR', `Backup ${name} of server ${hostname}@disk-${diskId} is damaged.`, hostname, diskId, name, define);
  },
  /** 8.1: the scheduled create did not start (not sent for 423, which only logs a warning). */
  startFailed(hostname: string, diskId: number, define: string): Alert {
    return {
      type: 'snapshot_start_failed',
      priority: 'ERROR',
      message: `Automatic snapshot ${hostname}/disk-${diskId}@${define} failed to start.`,
      hostname,
      disk_id: diskId,
      define,
      snapnames: [],
    };
  },
  /** 8.4: the retention delete did not start. */
  retentionFailed(hostname: string, diskId: number, define: string | null, snapnames: readonly string[]): Alert {
    return {
      type: 'retention_start_failed',
      priority: 'ERROR',
      message: `Automatic deletion of old snapshots ${hostname}/disk-${diskId} failed to start.`,
      hostname,
      disk_id: diskId,
      define,
      snapnames,
    };
  },
  /** 8.5: the task of an automatic snapshot failed. */
  createFailed(hostname: string, diskId: number, name: string, define: string | null): Alert {
    return oneSnapshot('snapshot_create_failed', 'ERROR', `Automatic snapshot ${name} of server ${hostname}@disk-${diskId} could not be created.`, hostname, diskId, name, define);
  },
  deleteFailed(hostname: string, diskId: number, name: string, define: string | null): Alert {
    return oneSnapshot('snapshot_delete_failed', 'ERROR', `Automatic snapshot ${name} of server ${hostname}@disk-${diskId} could not be deleted.`, hostname, diskId, name, define);
  },
  freezeFailed(hostname: string, diskId: number, name: string, define: string | null): Alert {
    return oneSnapshot('freeze_failed', 'WARNING', `Snapshot ${name} of server ${hostname}@disk-${diskId} was created, but filesystem freeze failed.`, hostname, diskId, name, define);
  },
  /** esnap: a scheduled slot was skipped because its storage is below ESNAP_MIN_FREE_PERCENT. */
  storageFull(hostname: string, diskId: number, name: string, define: string, storage: string, minFreePercent: number): Alert {
    return oneSnapshot('storage_full', 'ERROR', `Automatic snapshot ${name} of server ${hostname}@disk-${diskId} skipped: storage ${storage} free space below ${minFreePercent}%.`, hostname, diskId, name, define);
  },
  /** esnap: no automatic snapshot of the definition succeeded within two periods. */
  stale(hostname: string, diskId: number, define: string, lastSuccess: string | null): Alert {
    const since = lastSuccess === null ? 'never succeeded' : `last success ${lastSuccess}`;
    return {
      type: 'definition_stale',
      priority: 'ERROR',
      message: `Snapshot definition ${hostname}/disk-${diskId}@${define} is stale (${since}).`,
      hostname,
      disk_id: diskId,
      define,
      snapnames: [],
    };
  },
} as const;
