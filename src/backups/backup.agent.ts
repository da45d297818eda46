/**
 * The backup node's side of backup tasks: create, restore, verify, delete, each handed to the
 * engine of the backup's type (engine.ts), and turned into the task's outcome here.
 */
import type { TaskOutcome } from '../tasks/task.types.js';
import { pointOfNoReturn } from '../storage/op-scope.js';
import { engineFor, registerEngine, type BackupAgentIo } from './engine.js';
import { BACKUP_DAMAGED_MSG, resticEngine } from './engine.restic.js';
import { nativeEngine } from './engine.native.js';
import type { BackupCreated, BackupPayload, BackupRestored, BackupVerified } from './backup.payloads.js';

export type { BackupAgentIo } from './engine.js';
export { BACKUP_DAMAGED_MSG } from './engine.restic.js';

export const TYPE_DATASET = 1;
export const TYPE_FILE = 2;
registerEngine(TYPE_DATASET, nativeEngine);
registerEngine(TYPE_FILE, resticEngine);

export async function runBackupOp(p: BackupPayload, io: BackupAgentIo): Promise<TaskOutcome> {
  const engine = engineFor(p.type);
  switch (p.op) {
    case 'backup_create': {
      const { detail, ...data } = await engine.create(p, io);
      return { returncode: 0, message: 'Backup successfully created', detail: detail ?? '', data: data satisfies BackupCreated };
    }
    case 'backup_restore': {
      const began = Date.now();
      const data = await engine.restore(p, io);
      const seconds = Math.round((Date.now() - began) / 1000);
      const detail = `rc=0, time_elapsed=${seconds}${data.snapshotsGone ? `, msg='the disk was replaced by the received dataset; its snapshots are gone'` : ''}`;
      return { returncode: 0, message: 'Backup successfully restored', detail, data: data satisfies BackupRestored };
    }
    case 'backup_verify': {
      const data: BackupVerified = await engine.verify(p, io);
      if (data.ok) return { returncode: 0, message: 'Backup successfully verified', detail: `checksum=${data.checksum ?? ''}`, data };
      const why = data.error ?? `checksum=${data.checksum ?? ''}, expected=${p.checksum}`;
      return { returncode: 1, message: BACKUP_DAMAGED_MSG, detail: `Got bad return code (1). Error: ${BACKUP_DAMAGED_MSG} (${why})`, data };
    }
    case 'backup_cleanup':
      await engine.cleanup(p, io);
      return { returncode: 0, message: 'Backup leftovers removed', detail: '' };
    case 'backup_check': {
      const data = await engine.present(p, io);
      return { returncode: 0, message: 'Backups checked', detail: `present=${data.resticIds.length + data.filenames.length}`, data };
    }
    case 'backup_delete':
      pointOfNoReturn();
      await engine.remove(p, io);
      return { returncode: 0, message: p.resticIds.length > 1 || (p.items?.length ?? 0) > 1 ? 'Backups successfully deleted' : 'Backup successfully deleted', detail: '' };
  }
}
