/**
 * A small intent journal for storage operations that must not be left half done by a crash (the
 * switch of a rolled-back image, a qcow2 restore): one durable file per operation in flight,
 * written (and fsynced, with its folder) BEFORE the operation changes anything and removed once it
 * is complete. A driver's init() reads what is left and finishes or undoes each entry before the
 * disk takes any other task. Files are `<dir>/<12 hex>.json`; anything else in the folder is
 * ignored, a torn entry (a crash while writing it, so before the operation began) is dropped.
 *
 * Example:
 *   const j = new Journal(join(root, '.esnap-journal'));
 *   const id = await j.begin({ op: 'swap', temp: 'a/.img.tmp-0123456789ab' });
 *   …the operation…
 *   await j.end(id);
 *   // in init(): for (const { id, entry } of await j.pending()) { …recover…; await j.end(id); }
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';

const ENTRY_RE = /^[0-9a-f]{12}\.json$/;

/** fsync of a file or a folder (the latter makes a rename, link or unlink in it durable). */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes a new file (never replacing one) and fsyncs it. */
export async function writeDurably(path: string, data: string): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class Journal {
  constructor(readonly dir: string) {}

  async begin(entry: Record<string, unknown>): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const id = randomBytes(6).toString('hex');
    await writeDurably(join(this.dir, `${id}.json`), JSON.stringify(entry));
    await fsyncPath(this.dir);
    return id;
  }

  async end(id: string): Promise<void> {
    await unlink(join(this.dir, `${id}.json`)).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    });
  }

  /** Entries left by operations that did not complete (oldest first is not promised). */
  async pending(): Promise<Array<{ id: string; entry: Record<string, unknown> | null }>> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: Array<{ id: string; entry: Record<string, unknown> | null }> = [];
    for (const name of names.filter((n) => ENTRY_RE.test(n))) {
      let entry: Record<string, unknown> | null = null;
      try {
        const data: unknown = JSON.parse(await readFile(join(this.dir, name), 'utf8'));
        if (typeof data === 'object' && data !== null) entry = data as Record<string, unknown>;
      } catch {
        /* torn: written by a crash before the operation began */
      }
      out.push({ id: name.slice(0, 12), entry });
    }
    return out;
  }
}
