/**
 * The btrfs side of the snapshot index (src/storage/snapshot-index.ts): converting the old layout.
 */
import { join } from 'node:path';
import { appendIndex, readIndex, type IndexRecord } from '../snapshot-index.js';
import { isSubvolume, lstatOrNull, readdirOrEmpty, readSidecarSync, SIDECAR_EXT, SIDECAR_TMP_RE, unlinkQuiet } from './btrfs.fs.js';

/**
 * init(): converts the old layout (a side-car `<id>.json` per snapshot) into the index of each
 * snapshot folder, and removes what a crash can leave: side-car and compaction temporaries (both
 * `.<file>.tmp-<hex>`), side-cars whose snapshot was never made or already destroyed. The converted
 * records are appended and fsynced BEFORE their side-cars go, so a crash in between only converts
 * them again (the same records; the last one wins).
 */
export async function migrateSnapshotFolders(dir: string): Promise<void> {
  const names = await readdirOrEmpty(dir);
  const present = new Set(names);
  const converted: IndexRecord[] = [];
  const sidecars: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    if (SIDECAR_TMP_RE.test(name)) {
      await unlinkQuiet(path);
    } else if (name.endsWith(SIDECAR_EXT) && !name.startsWith('.')) {
      const id = name.slice(0, -SIDECAR_EXT.length);
      if (present.has(id) && isSubvolume(await lstatOrNull(join(dir, id)))) {
        const side = readSidecarSync(path);
        converted.push({ id, name: side.name, created: side.created });
      }
      sidecars.push(path);
    } else if (!name.startsWith('.')) {
      const st = await lstatOrNull(path);
      if (st?.isDirectory() && !isSubvolume(st)) await migrateSnapshotFolders(path);
    }
  }
  // Records already in the index (a conversion cut short) win over the side-car's: they are newer.
  const known = readIndex(dir);
  appendIndex(dir, converted.filter((r) => !known.has(r.id)), { sync: true });
  for (const path of sidecars) await unlinkQuiet(path);
}
