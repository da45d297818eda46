/**
 * Type 2 (file) backups with restic, on the backup node. Create: snapshot `is-<id>` of the source
 * disk (with the guest frozen around it when asked), its image handed to `restic backup --stdin`
 * (the snapshot file as restic's stdin, or the other node's send command writing into it: the
 * bytes do not pass through this process) and hashed beside it (restic.ts), the snapshot
 * destroyed again whatever happened; the definition's compression and bwlimit become restic's
 * `--compression` and `--limit-upload`. Restore: `restic dump` straight into the target disk's
 * file aside (or the other node's receive), switched in only when the bytes' SHA-256 is the one
 * recorded at backup time. Verify: `restic dump` of the repository itself (not the local cache)
 * into the hasher.
 */
import { StorageError } from '../storage/driver.js';
import { outsideScope, pointOfNoReturn } from '../storage/op-scope.js';
import { takeSourceSnapshot } from './source-snapshot.js';
import { Restic } from './restic.js';
import type { BackupAgentIo, BackupEngine } from './engine.js';

export const BACKUP_DAMAGED_MSG = 'Backup is damaged: its data does not match the checksum recorded when it was made';

function resticFor(io: BackupAgentIo, storage: string): Restic {
  const root = io.roots.get(storage);
  if (root === undefined) throw new StorageError('backend', `Storage ${storage} on node ${io.node} cannot hold file backups (it has no root folder)`);
  if (io.keysDir === null) throw new StorageError('backend', `Node ${io.node} has no data folder for backup keys`);
  return new Restic({ runner: io.runner, storageRoot: root, storageName: storage, keysDir: io.keysDir });
}

function resticIdOf(from: { resticId: string | null }): string {
  if (!from.resticId) throw new StorageError('backend', 'The backup has no restic snapshot');
  return from.resticId;
}

export const resticEngine: BackupEngine = {
  async create(p, io) {
    const began = Date.now();
    const restic = resticFor(io, p.storage);
    const transfer = io.transferFor(p.source.node);
    await restic.ensure();
    const freezeError = await takeSourceSnapshot(p, io, (task) => transfer.createSnapshot(p.source, p.snapshot, task));
    try {
      const r = await restic.backup(() => transfer.openImageSource(p.source, p.snapshot), p.filename, p.tags, { compression: p.compression ?? null, bwlimit: p.bwlimit ?? null });
      const seconds = Math.round((Date.now() - began) / 1000);
      const detail = `size=${r.size}, added=${r.added ?? 'null'}, time_elapsed=${seconds}${freezeError ? `, msg='${freezeError}'` : ''}`;
      return { resticId: r.resticId, filePath: p.filename, checksum: r.checksum, size: r.size, added: r.added, seconds, detail };
    } catch (err) {
      const orphan = (err as { orphanResticId?: string }).orphanResticId;
      if (orphan) await outsideScope(() => restic.forget([orphan])).catch((e: unknown) => io.log.error({ err: e, orphan }, 'could not forget a cut backup'));
      throw err;
    } finally {
      await outsideScope(() => transfer.destroySnapshot(p.source, p.snapshot)).catch((err: unknown) =>
        io.log.error({ err, snapshot: p.snapshot }, 'could not destroy the snapshot a backup read'),
      );
    }
  },

  async restore(p, io) {
    const restic = resticFor(io, p.from.storage);
    const transfer = io.transferFor(p.target.node);
    const r = await restic.dump(resticIdOf(p.from), p.from.filename, () => transfer.openDiskWrite(p.target, p.taskId));
    // null: restic wrote into the other node's receive, which checks the bytes against the
    // recorded SHA-256 that commit sends, and keeps the old bytes when they differ.
    if (r.checksum !== null && r.checksum !== p.checksum) {
      await r.sink?.abort();
      throw new StorageError('backend', BACKUP_DAMAGED_MSG);
    }
    pointOfNoReturn();
    await r.sink!.commit(p.checksum);
    return { replaced: false };
  },

  async verify(p, io) {
    const restic = resticFor(io, p.from.storage);
    try {
      const r = await restic.dump(resticIdOf(p.from), p.from.filename, null);
      return { ok: r.checksum === p.checksum, checksum: r.checksum };
    } catch (err) {
      if (err instanceof StorageError && err.code === 'busy') throw err;
      return { ok: false, checksum: null, error: err instanceof Error ? err.message : String(err) };
    }
  },

  async remove(p, io) {
    await resticFor(io, p.storage).forget(p.resticIds);
  },

  async present(p, io) {
    const restic = resticFor(io, p.storage);
    // No repository where rows say there are backups: the storage is not what it was (unmounted,
    // replaced), which is not the same as the backups being deleted.
    if (!(await restic.exists())) throw new StorageError('backend', `There is no restic repository in ${restic.repo}`);
    const ids = (await restic.snapshots()).map((s) => s.id);
    return { resticIds: p.resticIds.filter((r) => ids.some((id) => id.startsWith(r) || r.startsWith(id))), filenames: [] };
  },

  async cleanup(p, io) {
    await io.transferFor(p.source.node).destroySnapshot(p.source, p.snapshot);
    const restic = resticFor(io, p.storage);
    if (!(await restic.exists())) return;
    const left = (await restic.snapshots()).filter((s) => s.tags.includes(`bkp:${p.backupId}`)).map((s) => s.id);
    if (left.length > 0) await restic.forget(left);
  },
};
