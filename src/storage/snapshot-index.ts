/**
 * A per-disk snapshot index: the file `.esnap-index` in a folder of the disk's own (btrfs:
 * `.snapshots/<disk>/`, qcow2: `.esnap/<disk>/`), an append-only log holding each snapshot's user
 * name and exact creation time, for backends that cannot store them on the snapshot itself.
 * One line per record:
 *   {"id":"es-12","name":"before-upgrade","created":"2026-11-27T09:07:06.123Z"}   a snapshot
 *   {"id":"es-12","deleted":true}                                               a destroy
 *   {"esnapIndex":1,"base":123}                          header of a compacted file (first line)
 * The last record of an id wins. A record without a snapshot of its id is ignored by list(),
 * so the index is only ever a label store: it never makes a snapshot appear or vanish.
 *
 * Why a log and not a side-car file (btrfs's old layout: one `<id>.json` per snapshot; qcow2's:
 * one `.names.json` map per disk, rewritten and fsynced by every create; the drivers still read
 * both and convert them in init()): a create appends one line (one write(2) with O_APPEND), a list
 * reads one file, and a destroy appends one line.
 *
 * Crash safety: appends are not fsynced (an fsync cost about half of a create). The record is
 * appended BEFORE the snapshot is taken, so a crash of the process can never lose a name; a crash of
 * the machine can lose the names of the last moments, and those snapshots are listed with name null
 * and the backend's own creation time (the database keeps the name). Every record starts on a new line
 * (each append begins with "\n"), so a torn last record spoils only itself; lines that do not parse
 * are skipped. Compaction writes a new file (temporary, fsync, rename): it is whole or absent.
 *
 * Writers are serialised per disk by the task lock (create and destroy of one disk never overlap);
 * compaction runs inside destroy for that reason. Readers (list) may run at any time: they see the
 * old file or the new one, both complete.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, openSync, readFileSync, readSync, truncateSync, unlinkSync, writeSync } from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export const INDEX_FILE = '.esnap-index';
/** Below this size the index is never compacted (about 800 records). */
const COMPACT_MIN_BYTES = 64 * 1024;
/** Every append starts with a newline, so a file that was never compacted starts with one. */
const LEADING_NEWLINES = /^\n+/;
/** The header is read from the first bytes only. */
const HEADER_BYTES = 128;

export interface IndexEntry {
  readonly name: string | null;
  readonly created: Date | null;
}

export type IndexRecord =
  | { readonly id: string; readonly name: string | null; readonly created: Date | null }
  | { readonly id: string; readonly deleted: true };

export function indexPath(dir: string): string {
  return join(dir, INDEX_FILE);
}

/** Sizes of the index around one append: `previous` is what undoAppend() goes back to. */
export interface AppendResult {
  readonly previous: number;
  readonly size: number;
}

/** Appends records in ONE write (synchronous: a tiny write is cheaper than a thread-pool round trip). */
export function appendIndex(dir: string, records: readonly IndexRecord[], opts: { sync?: boolean } = {}): AppendResult {
  if (records.length === 0) return { previous: 0, size: 0 };
  const text = records.map((r) => '\n' + serialize(r)).join('');
  const fd = openSync(indexPath(dir), 'a', 0o600);
  try {
    writeSync(fd, text);
    if (opts.sync) fsyncSync(fd);
    const size = fstatSync(fd).size;
    return { previous: size - Buffer.byteLength(text), size };
  } finally {
    closeSync(fd);
  }
}

/** An append prepared ahead of its write (see prepareAppend). */
export interface PendingAppend {
  /** The compaction header's live size, for compactIfLarge (0 without a header). */
  readonly base: number;
  /** Writes the records in ONE write and closes the index; on failure the index is closed too. */
  commit(): AppendResult;
  /** Closes the index without writing. */
  abandon(): void;
}

/**
 * Serialises records, opens the index and reads its compaction header, leaving only the write:
 * destroy() prepares while its delete process runs and commits after it (the records must follow
 * the delete, see the header), so its only work after the process is one write(2). The index is
 * opened without O_CREAT; when it does not exist, commit() creates it as appendIndex() does. The
 * disk's one writer (the task lock) keeps the file from being replaced between the two.
 */
export function prepareAppend(dir: string, records: readonly IndexRecord[]): PendingAppend {
  const text = records.map((r) => '\n' + serialize(r)).join('');
  let fd: number | null = null;
  try {
    fd = openSync(indexPath(dir), constants.O_RDWR | constants.O_APPEND);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return {
    base: fd === null ? 0 : headerBase(fd),
    commit(): AppendResult {
      try {
        if (fd === null) return appendIndex(dir, records);
        if (text === '') return { previous: 0, size: 0 };
        writeSync(fd, text);
        const size = fstatSync(fd).size;
        return { previous: size - Buffer.byteLength(text), size };
      } finally {
        this.abandon();
      }
    },
    abandon(): void {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}

/**
 * Takes an append back after the snapshot it named could not be made, so a failed create leaves
 * the index as it was (the file goes when the append made it). Only the disk's one writer (the
 * task lock) appends, so nothing was appended after it.
 */
export function undoAppend(dir: string, appended: AppendResult): void {
  if (appended.previous === 0) unlinkSync(indexPath(dir));
  else truncateSync(indexPath(dir), appended.previous);
}

/** The live entries by id; a missing or unreadable index is an empty one (names are optional). */
export function readIndex(dir: string): Map<string, IndexEntry> {
  let text: string;
  try {
    text = readFileSync(indexPath(dir), 'utf8');
  } catch {
    return new Map(); // missing, or unreadable: listed without names rather than not at all
  }
  return parseIndex(text);
}

/** Parsed indexes by path, with the identity of the file they were parsed from. */
const cache = new Map<string, { readonly ino: number; readonly size: number; readonly mtimeMs: number; readonly entries: ReadonlyMap<string, IndexEntry> }>();
/** Disks whose index stays cached; beyond it the least recently listed one goes. */
const CACHE_MAX = 1024;

/**
 * readIndex() for list(): read without blocking the event loop, and parsed again only when the file
 * changed. An append changes its size, an undo truncates it, a compaction replaces it (another
 * inode), so (inode, size, mtime) tells a changed index; an unchanged one answers the same map.
 *
 * @example
 *   const index = await readIndexCached(snapDir); // a stat, plus a read and parse only after a change
 */
export async function readIndexCached(dir: string): Promise<ReadonlyMap<string, IndexEntry>> {
  const path = indexPath(dir);
  let text: string;
  let st: { ino: number; size: number; mtimeMs: number };
  try {
    st = await stat(path);
    const hit = cache.get(path);
    if (hit && hit.ino === st.ino && hit.size === st.size && hit.mtimeMs === st.mtimeMs) {
      cache.delete(path);
      cache.set(path, hit);
      return hit.entries;
    }
    text = await readFile(path, 'utf8');
  } catch {
    cache.delete(path);
    return new Map(); // missing, or unreadable: listed without names rather than not at all
  }
  const entries = parseIndex(text);
  // Stored under the identity read before the text: a write in between makes the next read parse again.
  cache.set(path, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, entries });
  if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
  return entries;
}

export function parseIndex(text: string): Map<string, IndexEntry> {
  // One JSON.parse of the whole log (its newlines made commas) is several times faster than one per
  // line. A torn record, or an empty line, makes it fail (a record's own text has no newline, and no
  // record prefix followed by "," and another record is valid JSON); then each line is parsed alone.
  let records: unknown[];
  try {
    records = JSON.parse(`[${text.replace(LEADING_NEWLINES, '').replaceAll('\n', ',')}]`) as unknown[];
  } catch {
    records = text.split('\n').map((line) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        return null; // a record torn by a crash, or an empty line
      }
    });
  }
  const out = new Map<string, IndexEntry>();
  for (const data of records) {
    if (typeof data !== 'object' || data === null) continue;
    const r = data as Record<string, unknown>;
    if (typeof r.id !== 'string') continue;
    if (r.deleted === true) {
      out.delete(r.id);
      continue;
    }
    const created = typeof r.created === 'string' ? new Date(r.created) : null;
    out.set(r.id, {
      name: typeof r.name === 'string' ? r.name : null,
      created: created && !Number.isNaN(created.getTime()) ? created : null,
    });
  }
  return out;
}

/**
 * Rewrites the index without its dead records once it has grown past twice its size after the last
 * compaction (and past COMPACT_MIN_BYTES): amortised, a destroy pays one small append. `exists`
 * says which ids still have a snapshot folder; records of the others are dropped too. `lastBase`
 * is the header's live size when the caller has read it already (prepareAppend).
 */
export async function compactIfLarge(dir: string, size: number, exists: (id: string) => boolean, lastBase?: number): Promise<boolean> {
  if (size <= COMPACT_MIN_BYTES || size <= 2 * (lastBase ?? readBase(dir))) return false;
  const live = [...readIndex(dir)].filter(([id]) => exists(id));
  const body = live.map(([id, e]) => '\n' + serialize({ id, name: e.name, created: e.created })).join('');
  const base = Buffer.byteLength(body);
  await writeAtomically(indexPath(dir), JSON.stringify({ esnapIndex: 1, base }) + body);
  return true;
}

/** Temporaries of a compaction: `..esnap-index.tmp-<hex>`; init() of a driver removes leftovers. */
export const INDEX_TMP_RE = /^\.\.esnap-index\.tmp-[0-9a-f]{12}$/;

/** Temporary, fsync, rename: the index is the old one or the new one, never a part. */
async function writeAtomically(path: string, data: string): Promise<void> {
  const tmp = join(dirname(path), `.${INDEX_FILE}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** The live size recorded by the last compaction (0 when the file has no header). */
function readBase(dir: string): number {
  let fd: number;
  try {
    fd = openSync(indexPath(dir), 'r');
  } catch {
    return 0;
  }
  try {
    return headerBase(fd);
  } finally {
    closeSync(fd);
  }
}

/** readBase() on an open index (read from offset 0, whatever the file position). */
function headerBase(fd: number): number {
  try {
    const buf = Buffer.alloc(HEADER_BYTES);
    const n = readSync(fd, buf, 0, HEADER_BYTES, 0);
    const first = buf.subarray(0, n).toString('utf8').split('\n')[0] ?? '';
    const header = JSON.parse(first) as { esnapIndex?: unknown; base?: unknown };
    return header.esnapIndex === 1 && typeof header.base === 'number' && Number.isSafeInteger(header.base) ? header.base : 0;
  } catch {
    return 0;
  }
}

function serialize(r: IndexRecord): string {
  return 'deleted' in r
    ? JSON.stringify({ id: r.id, deleted: true })
    : JSON.stringify({ id: r.id, name: r.name, created: r.created?.toISOString() ?? null });
}

