/**
 * Snapshots' exclusive bytes from btrfs quota groups: where the storage sits in its filesystem,
 * whether quotas are on, one `qgroup show` per read, and its parsers.
 *
 * Why paths: `btrfs --format json qgroup show --raw <fs>` names each subvolume by its path from
 * the filesystem's top level, and nothing cheaper maps a snapshot folder to its subvolume id (that
 * is one `btrfs inspect-internal rootid` process per snapshot). The storage root's own path from
 * the top level is the mount's root (field 4 of /proc/self/mountinfo: `/` or the `subvol=` of the
 * mount) joined with the root's place below the mount point.
 *
 * Why sysfs: /sys/fs/btrfs/<fsid>/qgroups exists exactly while quotas are on, and its
 * `inconsistent` says whether the numbers can be trusted; reading it spares a process per create
 * and per list on the common filesystem without quotas.
 *
 * Why two formats: JSON (`--format json`) is unambiguous, but btrfs-progs 6.2 ABORTS on it as soon
 * as any quota group of the filesystem has a limit ("INTERNAL ERROR: unknown unit base"), and
 * older btrfs-progs have no JSON at all. The `--raw` text table is the fallback, accepted only with
 * exactly the columns `Qgroupid Referenced Exclusive Path`; once JSON has failed, the reader keeps
 * to the table.
 *
 * Example:
 *   const reader = new QgroupReader(runner, root, 60_000);
 *   const bytes = await reader.exclusiveBytesIn(`${root}/.snapshots/d`); // Map of name to bytes, or null
 */
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, posix, relative, sep } from 'node:path';
import type { CommandRunner } from '../runner.js';
import { btrfsError, btrfsReason } from './btrfs.errors.js';

export interface MountEntry {
  /** Path inside the filesystem that is mounted (`/`, or `/vms` for `-o subvol=vms`). */
  readonly root: string;
  readonly mountpoint: string;
  readonly fstype: string;
  readonly source: string;
}

/** One level-0 quota group: one subvolume. */
export interface QgroupRow {
  readonly subvolid: number;
  readonly exclusive: number;
  /** From the top level, no leading slash; "" for the top level itself and for stale groups. */
  readonly path: string;
}

export type QuotaState = 'off' | 'on' | 'unreliable' | 'unknown';

export interface FsLocation {
  /** The storage root's path from the filesystem's top level ("" when it is the top level), or null when unknown. */
  readonly prefix: string | null;
  /** /sys/fs/btrfs/<fsid> of the filesystem, or null when it could not be found. */
  readonly sysfs: string | null;
}

/** mountinfo escapes space, tab, newline and backslash as octal (`\040`). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    // id parent major:minor root mountpoint options [optional…] - fstype source superopts
    if (dash < 6 || fields.length < dash + 3) continue;
    out.push({
      root: unescape(fields[3]!),
      mountpoint: unescape(fields[4]!),
      fstype: fields[dash + 1]!,
      source: unescape(fields[dash + 2]!),
    });
  }
  return out;
}

/** The mount a (real) path lives on: the last-mounted entry with the longest matching mount point. */
export function mountFor(entries: readonly MountEntry[], path: string): MountEntry | null {
  let best: MountEntry | null = null;
  for (const m of entries) {
    const inside = path === m.mountpoint || path.startsWith(m.mountpoint === '/' ? '/' : m.mountpoint + '/');
    if (inside && (best === null || m.mountpoint.length >= best.mountpoint.length)) best = m;
  }
  return best;
}

/** The path of `realRoot` from the filesystem's top level, as qgroup show prints paths. */
export function topLevelPath(mount: MountEntry, realRoot: string): string {
  const below = relative(mount.mountpoint, realRoot).split(sep).join('/');
  return posix.join(mount.root, below).replace(/^\/+/, '').replace(/^\.$/, '');
}

/**
 * Parses `btrfs --format json qgroup show --raw`: `{"qgroup-show": [{"qgroupid": "0/259",
 * "exclusive": "16384", "path": ".snapshots/es-1", …}]}` (numbers are strings). Level-0 groups only.
 * Throws on a shape it does not know rather than guessing.
 */
export function parseQgroupShow(stdout: string): QgroupRow[] {
  const data: unknown = JSON.parse(stdout);
  const list = typeof data === 'object' && data !== null ? (data as Record<string, unknown>)['qgroup-show'] : undefined;
  if (!Array.isArray(list)) throw new Error('qgroup show: no "qgroup-show" list in the output');
  const rows: QgroupRow[] = [];
  for (const item of list as unknown[]) {
    const r = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
    const id = /^(\d+)\/(\d+)$/.exec(String(r.qgroupid));
    const exclusive = Number(r.exclusive);
    if (!id || !Number.isSafeInteger(exclusive) || exclusive < 0 || typeof r.path !== 'string') {
      throw new Error(`qgroup show: unexpected entry ${JSON.stringify(item)}`);
    }
    if (id[1] === '0') rows.push({ subvolid: Number(id[2]), exclusive, path: r.path });
  }
  return rows;
}

const TABLE_HEADER = /^Qgroupid\s+Referenced\s+Exclusive\s+Path\s*$/;
const TABLE_RULE = /^-+\s+-+\s+-+\s+-+\s*$/;
/** `0/258   16384   16384   .snapshots/vm 1/es-1`: the path is the rest of the line and may hold spaces. */
const TABLE_ROW = /^(\d+)\/(\d+)\s+(\d+)\s+(\d+)\s+(.*?)\s*$/;

/**
 * Parses the text table of `btrfs qgroup show --raw` (no -p/-c/-r/-e columns). Level-0 groups
 * only; `<toplevel>` becomes "" as in JSON. Throws unless the header is exactly the expected one.
 */
export function parseQgroupTable(stdout: string): QgroupRow[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (!TABLE_HEADER.test(lines[0] ?? '') || !TABLE_RULE.test(lines[1] ?? '')) {
    throw new Error(`qgroup show: unexpected table header ${JSON.stringify(lines[0] ?? '')}`);
  }
  const rows: QgroupRow[] = [];
  for (const line of lines.slice(2)) {
    const m = TABLE_ROW.exec(line);
    const exclusive = Number(m?.[4]);
    if (!m || !Number.isSafeInteger(exclusive)) throw new Error(`qgroup show: unexpected row ${JSON.stringify(line)}`);
    if (m[1] === '0') rows.push({ subvolid: Number(m[2]), exclusive, path: m[5] === '<toplevel>' ? '' : m[5]! });
  }
  return rows;
}

/**
 * Exclusive bytes of the subvolumes directly in one folder, by name. `folder` is the folder's path
 * from the top level with a trailing slash, or, when `exact` is false (where the storage sits in
 * its filesystem is unknown), a path suffix: then a name found under two different places is
 * dropped rather than guessed. A path shared by two groups (a deleted subvolume whose group was not
 * yet dropped, and its successor) takes the newest subvolume's.
 */
export function exclusiveByName(rows: readonly QgroupRow[], folder: string, exact: boolean): Map<string, number> {
  const best = new Map<string, QgroupRow>();
  const ambiguous = new Set<string>();
  for (const row of rows) {
    let at = 0;
    if (!row.path.startsWith(folder)) {
      if (exact) continue;
      at = row.path.indexOf(`/${folder}`) + 1;
      if (at === 0) continue;
    }
    const name = row.path.slice(at + folder.length);
    if (name === '' || name.includes('/')) continue;
    const seen = best.get(name);
    if (seen && seen.path !== row.path) ambiguous.add(name);
    if (!seen || row.subvolid > seen.subvolid) best.set(name, row);
  }
  const out = new Map<string, number>();
  for (const [name, row] of best) if (!ambiguous.has(name)) out.set(name, row.exclusive);
  return out;
}

/** Finds the storage's place in its filesystem; unknown parts come back null, never an error. */
export async function locate(realRoot: string): Promise<FsLocation> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const mount = mountFor(parseMountInfo(text), realRoot);
  if (!mount || mount.fstype !== 'btrfs') return { prefix: null, sysfs: null };
  return { prefix: topLevelPath(mount, realRoot), sysfs: await sysfsDir(mount.source) };
}

/** /sys/fs/btrfs/<fsid> is the folder whose devices/ lists the mounted device. */
async function sysfsDir(source: string): Promise<string | null> {
  const device = basename(await realpath(source).catch(() => source));
  const fsids = await readdir('/sys/fs/btrfs').catch(() => [] as string[]);
  for (const fsid of fsids) {
    const dir = `/sys/fs/btrfs/${fsid}`;
    if (await stat(`${dir}/devices/${device}`).then(() => true, () => false)) return dir;
  }
  return null;
}

/**
 * Quotas as the kernel reports them now (an operator may switch them at any time). Synchronous:
 * two sysfs reads cost microseconds, their thread-pool round trips a noticeable part of a create.
 */
export function quotaState(sysfs: string | null): QuotaState {
  if (sysfs === null) return 'unknown';
  let flag: string;
  try {
    flag = readFileSync(`${sysfs}/qgroups/inconsistent`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return 'unknown';
    // No qgroups folder: quotas off. A folder without the flag (an older kernel): ask btrfs.
    return existsSync(`${sysfs}/qgroups`) ? 'unknown' : 'off';
  }
  return flag.trim() === '0' ? 'on' : 'unreliable';
}

/** Reads snapshots' exclusive bytes; every failure is null (sizes are optional), with a warning. */
export class QgroupReader {
  private location: Promise<FsLocation> | undefined;
  /** `location` once it has resolved: later reads spawn btrfs without first waiting a turn for it. */
  private located: FsLocation | undefined;
  private json = true;

  constructor(
    private readonly runner: CommandRunner,
    /** The storage root; the paths asked for are below it. */
    private readonly root: string,
    private readonly timeoutMs: number,
  ) {}

  /** Forget where the filesystem was found (the storage may have been remounted). */
  reset(): void {
    this.location = undefined;
    this.located = undefined;
  }

  /** Exclusive bytes of one snapshot (`qgroup show -f`), or null when quotas are off or unreliable. */
  async exclusiveBytesOf(path: string): Promise<number | null> {
    const rows = await this.rows(['-f', path]);
    // `-f <snapshot>` lists that snapshot's own group only; no path matching needed.
    return rows?.length === 1 ? rows[0]!.exclusive : null;
  }

  /**
   * Exclusive bytes of every subvolume directly in `dir` (a folder below the root), by name, or
   * null when quotas are off or unreliable. It needs no list of names, so list() starts the
   * `qgroup show` process before it reads the folder.
   */
  async exclusiveBytesIn(dir: string): Promise<Map<string, number> | null> {
    const rows = await this.rows([this.root]);
    if (rows === null) return null;
    const { prefix } = this.located ?? (await this.locate());
    const below = `${dir.slice(this.root.length + 1)}/`;
    return prefix === null ? exclusiveByName(rows, below, false) : exclusiveByName(rows, prefix === '' ? below : `${prefix}/${below}`, true);
  }

  /** The level-0 rows `qgroup show` prints for `target`; null when quotas are off or unreliable, or on failure (warned). */
  private async rows(target: readonly string[]): Promise<QgroupRow[] | null> {
    const state = quotaState((this.located ?? (await this.locate())).sysfs);
    if (state === 'off' || state === 'unreliable') return null;
    const json = this.json ? await this.read(['btrfs', '--format', 'json', 'qgroup', 'show', '--raw', ...target], parseQgroupShow) : undefined;
    let rows = json;
    if (rows instanceof Error || rows === undefined) {
      rows = await this.read(['btrfs', 'qgroup', 'show', '--raw', ...target], parseQgroupTable);
      if (!(rows instanceof Error)) this.json = false;
    }
    if (rows instanceof Error) {
      const failures = json instanceof Error ? `${json.message}; then ${rows.message}` : rows.message;
      process.emitWarning(`btrfs: cannot read snapshot sizes: ${failures}`);
      return null;
    }
    return rows;
  }

  private async locate(): Promise<FsLocation> {
    const pending = (this.location ??= realpath(this.root).then(locate, () => ({ prefix: null, sysfs: null })));
    const found = await pending;
    if (this.location === pending) this.located = found; // not when reset() came meanwhile
    return found;
  }

  /** Rows, null when btrfs says quotas are off or the numbers unreliable, an Error otherwise. */
  private async read(argv: readonly string[], parse: (stdout: string) => QgroupRow[]): Promise<QgroupRow[] | null | Error> {
    try {
      const result = await this.runner.run(argv, { env: { LC_ALL: 'C' }, timeoutMs: this.timeoutMs });
      const reason = btrfsReason(result.stderr);
      if (reason === 'quotas_off' || reason === 'qgroup_unreliable') return null;
      if (result.code !== 0) return btrfsError(argv, result);
      return parse(result.stdout);
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }
}
