/**
 * `esnap db backup <file>`: a consistent copy of the SQLite database, taken while the server runs.
 *
 * SQLite's online backup API copies the database page by page through a second connection. A step
 * that another connection's write interrupts makes the next step start over, so under steady write
 * load a copy made in small steps might never finish; this one copies every page in a single step,
 * inside one read transaction. In WAL mode that read transaction does not block the server's
 * writers, and the copy is the database as of one commit: every transaction committed before the
 * step began is in it, none is half in it.
 *
 * The copy is written to a temporary name beside the target, checked with `PRAGMA integrity_check`,
 * and only then linked to the target name, which must not exist: a failure leaves no file that
 * looks like a backup, and an existing file is never overwritten.
 *
 * PostgreSQL is not copied here: `pg_dump` does that job better than esnap could.
 */
import SQLite from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, linkSync, lstatSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { dbKindOf } from './dialect.js';

/** A backup that cannot be made; the message says why and what to do instead. */
export class BackupError extends Error {
  override readonly name = 'BackupError';
}

export interface BackupReport {
  /** The backup file, absolute. */
  readonly file: string;
  /** The live database file it was copied from, absolute. */
  readonly source: string;
  readonly bytes: number;
  readonly pages: number;
  /** The newest migration recorded in the copy (its schema version). */
  readonly migration: string | null;
}

/**
 * Copies the SQLite database named by `databaseUrl` (`sqlite:<path>`) to `target`.
 *
 *   const report = await backupDatabase(config.databaseUrl, '/backups/esnap-2026-11-27.db');
 *   process.stdout.write(restoreInstructions(report));
 */
export async function backupDatabase(databaseUrl: string, target: string): Promise<BackupReport> {
  if (dbKindOf(databaseUrl) === 'postgres') {
    throw new BackupError(
      'esnap db backup copies the SQLite database; this esnap uses PostgreSQL (ESNAP_DATABASE_URL). ' +
        'Back it up with pg_dump, e.g. `pg_dump -Fc -f esnap.dump <database url>`, and restore it with pg_restore.',
    );
  }
  const sourcePath = databaseUrl.slice('sqlite:'.length);
  if (sourcePath === '' || sourcePath === ':memory:') throw new BackupError(`there is no database file to back up (ESNAP_DATABASE_URL=${databaseUrl})`);
  const source = resolve(sourcePath);
  if (!existsSync(source)) {
    throw new BackupError(`no database at ${source}: check ESNAP_DATA_DIR / ESNAP_DATABASE_URL (the same settings as esnap serve)`);
  }
  const file = resolve(target);
  if (exists(file)) throw new BackupError(`${file} already exists; esnap db backup never overwrites a file: name a new one`);
  const dir = dirname(file);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new BackupError(`the folder ${dir} does not exist`);

  const tmp = join(dir, `.${basename(file)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  try {
    const pages = await copy(source, tmp);
    const migration = check(tmp);
    // link() refuses an existing name atomically, unlike rename(), which would replace a file
    // created since the check above.
    try {
      linkSync(tmp, file);
      rmSync(tmp);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new BackupError(`${file} already exists; esnap db backup never overwrites a file: name a new one`);
      // A filesystem without hard links: rename, the existence check above having passed.
      if (exists(file)) throw err;
      renameSync(tmp, file);
    }
    syncDir(dir);
    return { file, source, bytes: statSync(file).size, pages, migration };
  } finally {
    removeDbFiles(tmp);
  }
}

/** What to print after a backup: where it is and the steps that restore it. */
export function restoreInstructions(r: BackupReport): string {
  const migration = r.migration ? `, schema ${r.migration}` : '';
  return (
    `Backup written: ${r.file} (${r.bytes} bytes, ${r.pages} pages${migration}; integrity_check ok)\n\n` +
    `To restore it:\n` +
    `  1. stop esnap serve\n` +
    `  2. cp ${r.file} ${r.source}\n` +
    `  3. rm -f ${r.source}-wal ${r.source}-shm\n` +
    `  4. start esnap serve (the same version or a newer one: it migrates the schema forward)\n`
  );
}

const ALL_PAGES = 0x7fffffff;

/** Copies every page in one backup step (see the file comment); returns the page count. */
async function copy(source: string, tmp: string): Promise<number> {
  // A read-write connection, as the server's: a read-only one cannot create the WAL index when
  // the server is not running. It changes nothing (no pragma that writes, no journal mode change).
  const src = new SQLite(source, { fileMustExist: true });
  try {
    src.pragma('busy_timeout = 5000');
    // better-sqlite3's first step transfers nothing; the progress callback then asks for every
    // page in the next one (its largest step; a count taken from the last step could fall short
    // if the database grew in between, and the step after a concurrent write starts over).
    const done = await src.backup(tmp, { progress: () => ALL_PAGES });
    return done.totalPages;
  } finally {
    src.close();
  }
}

/** Checks the copy; returns its newest migration. Throws when the copy is damaged. */
function check(tmp: string): string | null {
  const copyDb = new SQLite(tmp, { fileMustExist: true });
  try {
    const rows = copyDb.pragma('integrity_check') as Array<{ integrity_check: string }>;
    const problems = rows.map((r) => r.integrity_check).filter((v) => v !== 'ok');
    if (problems.length > 0) throw new BackupError(`the copy failed PRAGMA integrity_check: ${problems.slice(0, 5).join('; ')}`);
    const hasMigrations = copyDb.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'esnap_migration'`).get();
    if (!hasMigrations) return null;
    const last = copyDb.prepare('SELECT max(name) AS name FROM esnap_migration').get() as { name: string | null };
    return last.name;
  } finally {
    copyDb.close();
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Removes a temporary database and whatever journal files SQLite left beside it. */
function removeDbFiles(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
}

/** Makes the new directory entry durable (a crash right after must not lose the backup's name). */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Not every filesystem lets a directory be synced; the file itself is already synced by SQLite.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
