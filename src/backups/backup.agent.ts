/**
 * The backup node's side of backup tasks (type 2, restic): create, restore, verify, delete. The
 * source and target disks are reached through a Transfer (local drivers, or SSH to their node).
 *
 * Create: snapshot `is-<id>` of the source disk, its image streamed into `restic backup --stdin`
 * (hashed on the way), the snapshot destroyed again whatever happened. Restore: `restic dump`
 * streamed into the target disk through its driver, written aside and switched in only when the
 * bytes' SHA-256 is the one recorded at backup time. Verify: `restic dump` to nowhere, hashed.
 */
import type { Logger } from '../app-context.js';
import type { TaskOutcome } from '../tasks/task.service.js';
import { StorageError } from '../storage/driver.js';
import type { CommandRunner } from '../storage/runner.js';
import { outsideScope, pointOfNoReturn } from '../storage/op-scope.js';
import { withFreeze, DEFAULT_FREEZE_LIMIT_MS } from '../guest/freeze.js';
import { Restic } from './restic.js';
import type { TransferFor } from './transfer.js';
import type { BackupCreated, BackupPayload, BackupVerified } from './backup.payloads.js';

export const TYPE_FILE = 2;

export interface BackupAgentIo {
  readonly node: string;
  readonly runner: CommandRunner;
  readonly log: Logger;
  readonly transferFor: TransferFor;
  /** Root folders of this node's storages that can hold restic repositories. */
  readonly roots: ReadonlyMap<string, string>;
  /** ESNAP_DATA_DIR/backup-keys; null: this node cannot hold type 2 backups. */
  readonly keysDir: string | null;
  readonly freezeLimitMs?: number;
}

export const BACKUP_DAMAGED_MSG = 'Backup is damaged: its data does not match the checksum recorded when it was made';

function resticFor(io: BackupAgentIo, storage: string): Restic {
  const root = io.roots.get(storage);
  if (root === undefined) throw new StorageError('backend', `Storage ${storage} on node ${io.node} cannot hold file backups (it has no root folder)`);
  if (io.keysDir === null) throw new StorageError('backend', `Node ${io.node} has no data folder for backup keys`);
  return new Restic({ runner: io.runner, storageRoot: root, storageName: storage, keysDir: io.keysDir });
}

function requireType2(type: number): void {
  if (type !== TYPE_FILE) throw new StorageError('backend', `Backup type ${type} is not supported by this agent yet`);
}

export async function runBackupOp(p: BackupPayload, io: BackupAgentIo): Promise<TaskOutcome> {
  switch (p.op) {
    case 'backup_create': {
      requireType2(p.type);
      const began = Date.now();
      const restic = resticFor(io, p.storage);
      const transfer = io.transferFor(p.source.node);
      await restic.ensure();
      const take = (): Promise<void> => transfer.createSnapshot(p.source, p.snapshot);
      if (p.freeze) {
        await withFreeze({ socket: p.freeze.socket, limitMs: io.freezeLimitMs ?? DEFAULT_FREEZE_LIMIT_MS, log: io.log }, take);
      } else await take();
      try {
        const r = await restic.backup(() => transfer.openSnapshotRead(p.source, p.snapshot), p.filename, p.tags);
        const data: BackupCreated = { resticId: r.resticId, checksum: r.checksum, size: r.size, added: r.added, seconds: Math.round((Date.now() - began) / 1000) };
        return { returncode: 0, message: 'Backup successfully created', detail: `size=${r.size}, added=${r.added ?? 'null'}, time_elapsed=${data.seconds}`, data };
      } catch (err) {
        const orphan = (err as { orphanResticId?: string }).orphanResticId;
        if (orphan) await outsideScope(() => restic.forget([orphan])).catch((e: unknown) => io.log.error({ err: e, orphan }, 'could not forget a cut backup'));
        throw err;
      } finally {
        await outsideScope(() => transfer.destroySnapshot(p.source, p.snapshot)).catch((err: unknown) =>
          io.log.error({ err, snapshot: p.snapshot }, 'could not destroy the snapshot a backup read'),
        );
      }
    }
    case 'backup_restore': {
      requireType2(p.type);
      const restic = resticFor(io, p.from.storage);
      const transfer = io.transferFor(p.target.node);
      const began = Date.now();
      const r = await restic.dump(p.from.resticId, p.from.filename, () => transfer.openDiskWrite(p.target, p.taskId));
      if (r.checksum !== p.checksum) {
        await r.sink?.abort();
        throw new StorageError('backend', BACKUP_DAMAGED_MSG);
      }
      pointOfNoReturn();
      await r.sink!.commit();
      return { returncode: 0, message: 'Backup successfully restored', detail: `rc=0, time_elapsed=${Math.round((Date.now() - began) / 1000)}` };
    }
    case 'backup_verify': {
      requireType2(p.type);
      const restic = resticFor(io, p.from.storage);
      let data: BackupVerified;
      try {
        const r = await restic.dump(p.from.resticId, p.from.filename, null);
        data = { ok: r.checksum === p.checksum, checksum: r.checksum };
      } catch (err) {
        if (err instanceof StorageError && err.code === 'busy') throw err;
        data = { ok: false, checksum: null, error: err instanceof Error ? err.message : String(err) };
      }
      if (data.ok) return { returncode: 0, message: 'Backup successfully verified', detail: `checksum=${data.checksum ?? ''}`, data };
      const detail = data.error ?? `checksum=${data.checksum ?? ''}, expected=${p.checksum}`;
      return { returncode: 1, message: BACKUP_DAMAGED_MSG, detail: `Got bad return code (1). Error: ${BACKUP_DAMAGED_MSG} (${detail})`, data };
    }
    case 'backup_delete': {
      requireType2(p.type);
      pointOfNoReturn();
      await resticFor(io, p.storage).forget(p.resticIds);
      return { returncode: 0, message: p.resticIds.length > 1 ? 'Backups successfully deleted' : 'Backup successfully deleted', detail: '' };
    }
  }
}
