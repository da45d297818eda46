/**
 * Where the qcow2 driver keeps the user-visible snapshot names of one image. A qcow2 tag holds the
 * snapshot id (`es-12`); the name cannot ride along in the tag without making ids ambiguous, so it
 * lives in the disk's snapshot index (src/storage/snapshot-index.ts) in `<root>/.esnap/<disk path>/`.
 *
 * Why there and not next to the image: disk paths may contain dots (`vm1/disk0.qcow2`), so any
 * `<image><suffix>` could be another disk's image; under `.esnap/` (a dot-folder no disk path can
 * enter) and with dot-named files (no disk path segment starts with a dot) nothing collides.
 *
 * The old layout was one `.names.json` per disk (`{"names": {"es-12": "before-upgrade"}}`),
 * rewritten and fsynced by every create and destroy; it is still read (the index wins over it) and
 * init() converts it. The names are only ever labels: a missing or broken file means names are
 * null, never an error, and an entry without a snapshot of that tag is ignored.
 */
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { appendIndex, INDEX_FILE, INDEX_TMP_RE, readIndex, readIndexCached, type IndexRecord } from '../snapshot-index.js';

export const META_DIR = '.esnap';
const LEGACY_FILE = '.names.json';
/** Temporaries of the old layout's writes: `.names.json.tmp-<hex>`. */
const LEGACY_TEMP_RE = /^\.names\.json\.tmp-[0-9a-f]{12}$/;

export function namesDir(root: string, diskPath: string): string {
  return join(root, META_DIR, diskPath);
}

/** Names by snapshot id: the old `.names.json` (gone after init()) overlaid with the index (cached while unchanged). */
export async function readNames(dir: string): Promise<Map<string, string>> {
  const names = await readLegacyNames(dir);
  for (const [id, entry] of await readIndexCached(dir)) {
    if (entry.name === null) names.delete(id);
    else names.set(id, entry.name);
  }
  return names;
}

/** Removes the names of a deleted disk (the folder may still hold other disks' folders). */
export async function removeNames(dir: string): Promise<void> {
  for (const file of [INDEX_FILE, LEGACY_FILE]) {
    await unlink(join(dir, file)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') throw err;
    });
  }
}

/**
 * init(): in every disk folder under `.esnap/`, converts `.names.json` into the index and removes
 * temporaries a crash left. The converted records are appended and fsynced BEFORE the old file
 * goes, so a crash in between only converts it again.
 */
export async function migrateNames(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, e.name);
    if (e.isDirectory()) await migrateNames(path);
    else if (LEGACY_TEMP_RE.test(e.name) || INDEX_TMP_RE.test(e.name)) await unlink(path).catch(() => undefined);
  }
  const legacy = await readLegacyNames(dir);
  if (legacy.size === 0) return;
  const known = readIndex(dir);
  const records: IndexRecord[] = [...legacy].filter(([id]) => !known.has(id)).map(([id, name]) => ({ id, name, created: null }));
  appendIndex(dir, records, { sync: true });
  await unlink(join(dir, LEGACY_FILE)).catch(() => undefined);
}

async function readLegacyNames(dir: string): Promise<Map<string, string>> {
  try {
    const data: unknown = JSON.parse(await readFile(join(dir, LEGACY_FILE), 'utf8'));
    const names = (data as { names?: unknown } | null)?.names;
    if (typeof names !== 'object' || names === null) return new Map();
    return new Map(Object.entries(names).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return new Map();
  }
}
