/**
 * Everything that differs between the zfs implementations esnap meets, in ONE table detected once
 * per driver, and the commands built from it. The driver never asks "is this zfs-fuse?": it asks
 * this module for the argv of a list, a destroy or a snapshot of several disks.
 *
 * | capability      | OpenZFS 2.x                         | zfs-fuse 0.7.0 (this machine)           |
 * |-----------------|-------------------------------------|-----------------------------------------|
 * | listParsable    | `zfs list -t snapshot -H -p -d 1`   | no `-p`: `zfs get -Hp -r`, filtered     |
 * | sizeProperty    | `written` (bytes new since previous)| `used` (bytes unique to the snapshot)   |
 * | commaDestroy    | `zfs destroy ds@a,b,c`              | one snapshot per call                   |
 * | multiSnapshot   | `zfs snapshot a@x b@x` (atomic)     | one snapshot per call                   |
 *
 * Detection runs probes that can never change anything: a dry-run (`-n`) destroy of two names
 * that do not exist, and a multi-snapshot call whose FIRST dataset does not exist (OpenZFS opens
 * every dataset before it creates anything; zfs-fuse refuses the argument count up front).
 */
import { randomBytes } from 'node:crypto';
import type { RunResult } from '../runner.js';
import { zfsError } from './zfs.errors.js';

export interface ZfsCapabilities {
  /** `zfs list` accepts `-p` (exact numbers). */
  readonly listParsable: boolean;
  /** The snapshot size property: `written` where it exists, else `used`. */
  readonly sizeProperty: 'written' | 'used';
  /** `zfs destroy ds@a,b,…` destroys several snapshots in one call. */
  readonly commaDestroy: boolean;
  /** `zfs snapshot a@x b@x …` takes several snapshots in one atomic call. */
  readonly multiSnapshot: boolean;
}

/** Runs one zfs argv (through the driver's runner); never throws on a non-zero exit. */
export type ZfsExec = (argv: readonly string[]) => Promise<RunResult>;

/**
 * Probes the installed zfs on `dataset` (which must exist). A probe that fails for any reason but
 * "not supported" is an error: a broken storage must not be mistaken for an old zfs.
 */
export async function detectCapabilities(exec: ZfsExec, dataset: string): Promise<ZfsCapabilities> {
  const probe = `esnap-probe-${randomBytes(6).toString('hex')}`;
  const supported = async (argv: string[], okReasons: readonly string[] = []): Promise<boolean> => {
    const r = await exec(argv);
    if (r.code === 0) return true;
    const err = zfsError(argv, r);
    if (err.reason === 'unsupported') return false;
    if (okReasons.includes(err.reason)) return true;
    throw err;
  };
  const listParsable = await supported(['zfs', 'list', '-H', '-p', '-o', 'name', dataset]);
  const written = await supported(['zfs', 'get', '-Hp', '-o', 'value', 'written', dataset]);
  // Dry run: nothing is destroyed even if the names existed. "could not find any snapshots" is the
  // answer of a zfs that parsed the comma list.
  const commaDestroy = await supported(['zfs', 'destroy', '-n', `${dataset}@${probe}-a,${probe}-b`], ['missing']);
  // The first dataset does not exist, so a zfs that takes several snapshots fails on it before
  // creating any; one that takes only one fails on the argument count.
  const multiSnapshot = await supported(['zfs', 'snapshot', `${dataset}/${probe}@${probe}`, `${dataset}@${probe}`], ['missing']);
  return Object.freeze({ listParsable, sizeProperty: written ? 'written' : 'used', commaDestroy, multiSnapshot });
}

/** What every zfs implementation can do: the safe table, for a caller that must not probe. */
export const MINIMAL_CAPABILITIES: ZfsCapabilities = Object.freeze({
  listParsable: false,
  sizeProperty: 'used',
  commaDestroy: false,
  multiSnapshot: false,
});

/** A snapshot as zfs reports it, before the driver turns it into a SnapshotInfo. */
export interface ZfsSnapshotRow {
  /** The short name after `@`. */
  readonly id: string;
  /** Seconds since the epoch (zfs `creation`). */
  readonly creation: number;
  /** The transaction group that created it: the true order of snapshots within one second. */
  readonly txg: number;
  readonly size: number;
  /** User properties; zfs prints `-` for an unset one, kept here as null. */
  readonly snapname: string | null;
  readonly createdMs: number | null;
}

/** The user properties esnap stores on a snapshot. */
export const PROP_SNAPNAME = 'es:snapname';
/** Creation time in epoch milliseconds: zfs `creation` has whole seconds, too coarse to order snapshots. */
export const PROP_CREATED = 'es:created';

/** The one argv that lists the snapshots of exactly one dataset, never its children's or the pool's. */
export function listCommand(caps: ZfsCapabilities, dataset: string): string[] {
  const props = ['creation', 'createtxg', caps.sizeProperty, PROP_SNAPNAME, PROP_CREATED];
  return caps.listParsable
    ? ['zfs', 'list', '-t', 'snapshot', '-H', '-p', '-o', ['name', ...props].join(','), '-d', '1', dataset]
    : // zfs-fuse: `get -Hp` is its only exact output; `-r` also walks child datasets, filtered in parseList.
      ['zfs', 'get', '-Hp', '-r', '-o', 'name,property,value', props.join(','), dataset];
}

/** Parses the output of listCommand; only `<dataset>@…` rows, in the order zfs printed them. */
export function parseList(caps: ZfsCapabilities, dataset: string, stdout: string): ZfsSnapshotRow[] {
  const prefix = `${dataset}@`;
  const records = new Map<string, Map<string, string>>();
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    const cols = line.split('\t');
    const name = cols[0] ?? '';
    if (!name.startsWith(prefix)) continue;
    const id = name.slice(prefix.length);
    if (caps.listParsable) {
      // name, creation, createtxg, size, es:snapname, es:created; no value holds a tab (names are checked).
      const [, creation = '', txg = '', size = '', snapname = '-', created = '-'] = cols;
      records.set(
        id,
        new Map([['creation', creation], ['createtxg', txg], ['size', size], [PROP_SNAPNAME, snapname], [PROP_CREATED, created]]),
      );
    } else {
      const [, property = '', value = ''] = cols;
      const rec = records.get(id) ?? new Map<string, string>();
      rec.set(property === caps.sizeProperty ? 'size' : property, value);
      records.set(id, rec);
    }
  }
  return [...records].map(([id, rec]) => {
    const creation = Number(rec.get('creation'));
    const txg = Number(rec.get('createtxg'));
    const size = Number(rec.get('size'));
    if (![creation, txg, size].every(Number.isSafeInteger)) {
      throw new Error(`zfs listed ${prefix}${id} without numeric creation/createtxg/size: ${JSON.stringify(Object.fromEntries(rec))}`);
    }
    const snapname = rec.get(PROP_SNAPNAME);
    const created = Number(rec.get(PROP_CREATED));
    return {
      id,
      creation,
      txg,
      size,
      snapname: snapname === undefined || snapname === '-' ? null : snapname,
      createdMs: Number.isSafeInteger(created) ? created : null,
    };
  });
}

/** Longest comma list per destroy call: far below ARG_MAX and zfs's own buffers. */
const MAX_COMMA_ARG = 4000;

/** The destroy argvs for `ids` of one dataset: comma batches where zfs takes them, else one per id. */
export function destroyCommands(caps: ZfsCapabilities, dataset: string, ids: readonly string[]): string[][] {
  if (!caps.commaDestroy) return ids.map((id) => ['zfs', 'destroy', `${dataset}@${id}`]);
  const out: string[][] = [];
  let batch: string[] = [];
  const flush = (): void => {
    if (batch.length > 0) out.push(['zfs', 'destroy', `${dataset}@${batch.join(',')}`]);
    batch = [];
  };
  for (const id of ids) {
    if (dataset.length + 1 + [...batch, id].join(',').length > MAX_COMMA_ARG) flush();
    batch.push(id);
  }
  flush();
  return out;
}

/** One `zfs snapshot` call and the snapshots it makes. */
export interface SnapshotCommand {
  readonly argv: string[];
  readonly snapshots: string[];
}

/**
 * Snapshot calls for several `<dataset>@<name>` (each dataset its own name): one atomic call per
 * pool where zfs takes several (OpenZFS requires one pool per call), else one call per snapshot.
 */
export function snapshotCommands(caps: ZfsCapabilities, snapshots: readonly string[], props: readonly string[]): SnapshotCommand[] {
  const opts = props.flatMap((p) => ['-o', p]);
  let groups: string[][];
  if (caps.multiSnapshot) {
    const byPool = new Map<string, string[]>();
    for (const snap of snapshots) {
      const pool = snap.split(/[/@]/, 1)[0]!;
      byPool.set(pool, [...(byPool.get(pool) ?? []), snap]);
    }
    groups = [...byPool.values()];
  } else {
    groups = snapshots.map((s) => [s]);
  }
  return groups.map((group) => ({ argv: ['zfs', 'snapshot', ...opts, ...group], snapshots: group }));
}
