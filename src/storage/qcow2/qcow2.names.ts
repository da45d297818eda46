/**
 * The side-car that keeps the user-visible snapshot names of one qcow2 image. A qcow2 tag holds the
 * snapshot id (`es-12`); the name cannot ride along in the tag without making ids ambiguous, so it
 * lives in `<root>/.esnap/<disk path>/.names.json` as `{"names": {"es-12": "before-upgrade"}}`.
 *
 * Why there and not next to the image: disk paths may contain dots (`vm1/disk0.qcow2`), so any
 * `<image><suffix>` could be another disk's image; under `.esnap/` (a dot-folder no disk path can
 * enter) and with a dot-named file (no disk path segment starts with a dot) nothing collides.
 *
 * The side-car is only ever a label store: a missing or broken one means names are null, never an
 * error, and an entry without a snapshot of that tag is ignored. Writes are atomic (temporary,
 * fsync, rename); operations on one disk are serialised by the task lock, so there is one writer.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export const META_DIR = '.esnap';
const FILE = '.names.json';
/** Temporaries: `.names.json.tmp-<hex>` in the disk's side-car folder; init() removes leftovers. */
export const NAMES_TEMP_RE = /^\.names\.json\.tmp-[0-9a-f]{12}$/;

export function namesDir(root: string, diskPath: string): string {
  return join(root, META_DIR, diskPath);
}

export async function readNames(dir: string): Promise<Map<string, string>> {
  try {
    const data: unknown = JSON.parse(await readFile(join(dir, FILE), 'utf8'));
    const names = (data as { names?: unknown } | null)?.names;
    if (typeof names !== 'object' || names === null) return new Map();
    return new Map(Object.entries(names).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return new Map();
  }
}

/**
 * Applies `change` to the stored names and writes them back atomically. An empty map removes the
 * file, so adding a name and taking it back (a create that failed) leaves no trace.
 */
export async function updateNames(dir: string, change: (names: Map<string, string>) => void): Promise<void> {
  const names = await readNames(dir);
  change(names);
  if (names.size === 0) return removeNames(dir);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `${FILE}.tmp-${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'wx');
  try {
    await fh.writeFile(JSON.stringify({ names: Object.fromEntries(names) }));
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, join(dir, FILE));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** Removes the side-car of a deleted disk (the folder may still hold other disks' folders). */
export async function removeNames(dir: string): Promise<void> {
  await unlink(join(dir, FILE)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') throw err;
  });
}
