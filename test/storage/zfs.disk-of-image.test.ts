/**
 * The zfs driver names the disk of an image file (libvirt disk mapping): `disk.img` at the top of the
 * mountpoint of a dataset under the storage's dataset. zfs-fuse does not always resolve a path to
 * its dataset (`zfs list <folder>`): in the chaos run a libvirt domain's zfs disk, made a moment
 * before, stayed "not under an esnap storage" for minutes. When the path lookup fails, the storage's
 * own datasets are matched by mountpoint. Real zfs-fuse pool; the failing path lookup is made at the
 * process edge (the runner), since zfs-fuse cannot be made to fail it on demand.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { ZfsDriver } from '../../src/storage/zfs/zfs.driver.js';
import { FaultRunner, isCommand } from '../helpers/fault-runner.js';
import { platformUnavailable } from '../platform/require.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';

/** The real runner, but `zfs list … <absolute path>` answers as zfs-fuse sometimes does: not a dataset. */
const noPathLookup = new FaultRunner({
  before(argv) {
    const last = argv[argv.length - 1]!;
    if (!isCommand(argv, 'zfs', 'list') || !last.startsWith('/')) return undefined;
    return { code: 1, stdout: '', stderr: `cannot open '${last}': dataset does not exist\n`, durationMs: 0 };
  },
});

const reason = await zfsUnavailable();
if (reason !== null) {
  platformUnavailable('zfs diskOfImage', reason);
} else {
  let pool: ZfsPool;
  beforeAll(async () => {
    pool = await makeZfsPool(128);
  }, 120_000);
  afterAll(async () => {
    await pool?.cleanup();
  });

  it('names the disk of an image when zfs cannot resolve the path, and nothing outside the storage', async () => {
    const real = new ZfsDriver({ dataset: `${pool.name}/vms`, runner: new NodeCommandRunner() });
    await new NodeCommandRunner().run(['zfs', 'create', `${pool.name}/vms`]);
    await real.init();
    await real.createDisk({ path: 'dom-3', sizeBytes: 1024 * 1024 });
    const image = (await real.imageOf({ path: 'dom-3' })).path;
    expect(await real.diskOfImage(image)).toBe('dom-3');

    const driver = new ZfsDriver({ dataset: `${pool.name}/vms`, runner: noPathLookup });
    // Before: null (the disk was listed as not under an esnap storage).
    expect(await driver.diskOfImage(image)).toBe('dom-3');
    // A folder of the pool outside the storage's dataset is no disk of it.
    await new NodeCommandRunner().run(['zfs', 'create', `${pool.name}/other`]);
    const outside = join(pool.mountpoint, 'other', 'disk.img');
    await mkdir(join(pool.mountpoint, 'other'), { recursive: true });
    await writeFile(outside, Buffer.alloc(0));
    expect(await driver.diskOfImage(outside)).toBeNull();
    expect(await driver.diskOfImage(join(pool.mountpoint, 'vms', 'dom-3', 'other.img'))).toBeNull();
  }, 120_000);
}
