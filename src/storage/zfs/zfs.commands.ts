/**
 * The zfs driver's command layer: every zfs command goes through `zfs()`, which retries "dataset is
 * busy" (zfs-fuse says so for a moment after a dataset was used) and turns stderr into typed
 * errors; above it, the dataset reads the driver's operations share (properties, the image and its
 * size, child datasets, which of disk or snapshot is missing) and the clean-up of empty parents.
 */
import { readdir, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageError } from '../driver.js';
import type { CommandRunner, RunResult } from '../runner.js';
import { isMissing, zfsError, ZfsError } from './zfs.errors.js';

/** The raw image file in a disk dataset's mountpoint. */
export const IMAGE_NAME = 'disk.img';

export class ZfsCommands {
  constructor(
    private readonly runner: CommandRunner,
    /** The storage's dataset: destroyEmptyParents never goes above it. */
    private readonly dataset: string,
    private readonly busyDelays: readonly number[],
    private readonly timeoutMs: number,
  ) {}

  /** Runs one zfs command, retrying while zfs says the dataset is busy; throws a ZfsError on failure. */
  async zfs(argv: readonly string[]): Promise<RunResult> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.runZfs(argv);
      if (r.code === 0) return r;
      const err = zfsError(argv, r);
      const delay = this.busyDelays[attempt];
      if (err.reason !== 'busy' || delay === undefined) throw err;
      await sleep(delay);
    }
  }

  /** One run, exit code returned as is. LC_ALL=C: the error translator reads English text. */
  runZfs(argv: readonly string[]): Promise<RunResult> {
    return this.runner.run(argv, { timeoutMs: this.timeoutMs, env: { LC_ALL: 'C' } });
  }

  async getProps(name: string, props: readonly string[]): Promise<Map<string, string>> {
    const out = await this.zfs(['zfs', 'get', '-Hp', '-o', 'property,value', props.join(','), name]);
    return new Map(out.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t', 2) as [string, string]));
  }

  async imagePath(ds: string): Promise<string> {
    const props = await this.getProps(ds, ['mountpoint', 'mounted']);
    const mountpoint = props.get('mountpoint') ?? '';
    if (!isAbsolute(mountpoint)) throw new StorageError('backend', `Dataset ${ds} has no mountpoint (${mountpoint || 'none'})`);
    if (props.get('mounted') !== 'yes') throw new StorageError('backend', `Dataset ${ds} is not mounted (after a zfs restart: zfs mount -a)`);
    return join(mountpoint, IMAGE_NAME);
  }

  async imageSize(ds: string): Promise<number> {
    const image = await this.imagePath(ds);
    const st = await stat(image).catch((err: unknown) => {
      throw new StorageError('disk_missing', `Dataset ${ds} holds no ${IMAGE_NAME}`, { cause: err });
    });
    return st.size;
  }

  /** Child filesystems of `ds` ([] for a plain disk), or null when `ds` does not exist. */
  /**
   * The datasets createDisk made above a nested disk (`nestdir/a/b/img`) go with its last disk: each
   * parent below the storage's dataset that has no child dataset, no snapshot and nothing in its
   * folder is destroyed, nearest first; the first one still in use ends the walk. `destroy` without
   * `-r` refuses a dataset that got a child meanwhile.
   */
  async destroyEmptyParents(ds: string): Promise<void> {
    for (let p = ds.slice(0, ds.lastIndexOf('/')); p.startsWith(`${this.dataset}/`); p = p.slice(0, p.lastIndexOf('/'))) {
      const children = await this.childDatasets(p);
      if (children === null) continue;
      if (children.length > 0) return;
      const snapshots = await this.zfs(['zfs', 'list', '-H', '-o', 'name', '-t', 'snapshot', '-d', '1', p]);
      if (snapshots.stdout.trim() !== '') return;
      const props = await this.getProps(p, ['mountpoint', 'mounted']);
      const mountpoint = props.get('mountpoint') ?? '';
      if (props.get('mounted') !== 'yes' || !isAbsolute(mountpoint) || (await readdir(mountpoint)).length > 0) return;
      await this.zfs(['zfs', 'destroy', p]);
    }
  }

  async childDatasets(ds: string): Promise<string[] | null> {
    try {
      const out = await this.zfs(['zfs', 'list', '-H', '-o', 'name', '-r', '-d', '1', '-t', 'filesystem,volume', ds]);
      return out.stdout.split('\n').filter((n) => n !== '' && n !== ds);
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  /** zfs says `<ds>@<id>` does not exist whether the snapshot or the whole disk is missing; tell which. */
  async whichMissing(err: unknown, ds: string): Promise<never> {
    if (err instanceof ZfsError && err.code === 'snapshot_missing' && (await this.childDatasets(ds)) === null) {
      throw new StorageError('disk_missing', `Disk dataset ${ds} does not exist`, { cause: err });
    }
    throw err;
  }
}
