/**
 * The zfs driver on a real zfs-fuse pool (the contract suite plus ZFS specifics: capability
 * detection, es:snapname, rollback -r, busy retries, names refused before any command, a full
 * pool, restore's rename/recv/put-back, several disks at once), and the OpenZFS command paths that
 * zfs-fuse cannot run, checked on their argv through an injected capability table.
 */
import { randomBytes } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DiskRef } from '../../src/storage/driver.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { CommandRunner, PipeOptions, PipeResult, RunOptions, RunResult } from '../../src/storage/runner.js';
import {
  destroyCommands,
  detectCapabilities,
  listCommand,
  parseList,
  snapshotCommands,
  type ZfsCapabilities,
} from '../../src/storage/zfs/zfs.capabilities.js';
import { ZfsDriver } from '../../src/storage/zfs/zfs.driver.js';
import { platformUnavailable } from '../platform/require.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';
import { BAD_IDS, BAD_PATHS, driverContract, expectStorageError, type ContractTarget, type DiskIO } from './driver-contract.js';
import { rawImageIO } from './raw-image-io.js';

const MiB = 1024 * 1024;
const runner = new NodeCommandRunner();
const OPENZFS: ZfsCapabilities = { listParsable: true, sizeProperty: 'written', commaDestroy: true, multiSnapshot: true };

/** Passes every command to the real runner and records it; `answer` can stand in for zfs (OpenZFS paths). */
class RecordingRunner implements CommandRunner {
  readonly calls: string[][] = [];
  constructor(private readonly answer?: (argv: readonly string[]) => RunResult | undefined) {}
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    return Promise.resolve(this.answer?.(argv) ?? runner.run(argv, options));
  }
  pipe(producer: readonly string[], consumer: readonly string[], options?: PipeOptions): Promise<PipeResult> {
    this.calls.push([...producer, '|', ...consumer]);
    return runner.pipe(producer, consumer, options);
  }
  count(verb: string): number {
    return this.calls.filter((c) => c[1] === verb).length;
  }
}

const ok = (stdout = ''): RunResult => ({ code: 0, stdout, stderr: '', durationMs: 1 });

async function zfsCheck(argv: string[]): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const r = await runner.run(argv, { env: { LC_ALL: 'C' } });
    if (r.code === 0) return r.stdout;
    // zfs-fuse says "busy" for a moment after a dataset was used.
    if (!/busy/.test(r.stderr) || attempt === 10) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
    await sleep(100);
  }
}

function zfsIO(driver: ZfsDriver): DiskIO {
  return rawImageIO((d) => driver.imagePathOf(d));
}

interface ZfsEnv {
  readonly dataset: string;
  readonly driver: ZfsDriver;
  readonly runner: RecordingRunner;
  readonly io: DiskIO;
  fingerprint(): Promise<string>;
  cleanup(): Promise<void>;
}

let envSeq = 0;
/** A fresh storage dataset on the pool and a driver on it (not yet initialised). */
async function zfsEnv(pool: ZfsPool, opts: { busyRetryDelaysMs?: number[] } = {}): Promise<ZfsEnv> {
  const dataset = `${pool.name}/s${++envSeq}`;
  await zfsCheck(['zfs', 'create', dataset]);
  const rec = new RecordingRunner();
  const driver = new ZfsDriver({ dataset, runner: rec, ...opts });
  return {
    dataset,
    driver,
    runner: rec,
    io: zfsIO(driver),
    // Every dataset and snapshot below the storage, with its identity and esnap's properties,
    // and each image's size and mtime: what any call that must change nothing would change.
    async fingerprint() {
      // zfs-fuse's snapshot size (`used`) is settled at the next transaction group; a sync task
      // (a property set on the pool, outside the storage) commits it, as `zpool sync` would.
      // (It may fail on a full pool, where nothing is written anyway.)
      await runner.run(['zfs', 'set', `esnap:settle=${Date.now()}`, pool.name]);
      const out = await zfsCheck(['zfs', 'get', '-Hp', '-r', '-o', 'name,property,value', 'guid,es:snapname,es:created', dataset]);
      const lines = out.trim().split('\n');
      for (const name of new Set(lines.map((l) => l.split('\t')[0]!))) {
        if (name.includes('@')) continue;
        const st = await stat(join(pool.mountpoint, name.slice(pool.name.length), 'disk.img')).catch(() => null);
        lines.push(`${name} image ${st ? `${st.size} ${st.mtimeMs}` : '-'}`);
      }
      return lines.sort().join('\n');
    },
    cleanup: async () => void (await zfsCheck(['zfs', 'destroy', '-r', dataset])),
  };
}

async function fillRandom(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    for (let off = 0; off < bytes; off += MiB) await fh.write(randomBytes(Math.min(MiB, bytes - off)), 0, Math.min(MiB, bytes - off), off);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

describe('zfs driver on a zfs-fuse pool', async () => {
  const reason = await zfsUnavailable();
  if (reason !== null) return platformUnavailable('needs zfs-fuse', reason);

  let pool: ZfsPool | undefined;
  const p = (): ZfsPool => pool ?? expect.unreachable('no pool');
  beforeAll(async () => {
    pool = await makeZfsPool(256);
  });
  afterAll(async () => {
    await pool?.cleanup();
  });

  driverContract('zfs on zfs-fuse', async (): Promise<ContractTarget> => {
    const env = await zfsEnv(p());
    return { driver: env.driver, io: env.io, sizesKnown: true, disksNest: true, fingerprint: () => env.fingerprint(), cleanup: () => env.cleanup() };
  });

  describe('zfs specifics', () => {
    let env: ZfsEnv | undefined;
    const e = (): ZfsEnv => env ?? expect.unreachable('no env');
    const d0: DiskRef = { path: 'vm1/disk0', sizeBytes: 8 * MiB };
    const snapshotsOnPool = async (ds: string): Promise<string[]> =>
      (await zfsCheck(['zfs', 'list', '-H', '-o', 'name', '-t', 'snapshot', '-r', ds])).split('\n').filter(Boolean);
    beforeEach(async () => {
      env = await zfsEnv(p(), { busyRetryDelaysMs: [20, 40, 80] });
      await env.driver.init();
    });
    afterEach(async () => {
      await env?.cleanup();
      env = undefined;
    });

    it('detects the zfs-fuse capability table once per driver', async () => {
      expect(e().driver.zfsCapabilities).toEqual({ listParsable: false, sizeProperty: 'used', commaDestroy: false, multiSnapshot: false });
      expect(e().driver.capabilities).toEqual({ rollbackKeepsNewer: false, batchDestroy: false });
      const probes = e().runner.calls.length;
      await e().driver.init();
      await e().driver.createDisk(d0);
      await e().driver.create(d0, 'es-1', { name: 'one' });
      await e().driver.list(d0);
      // No probe again: a second init() is the same promise, and operations read the table.
      expect(e().runner.calls.slice(probes).filter((c) => c.some((a) => a.includes('esnap-probe')))).toEqual([]);
      expect(e().runner.calls.filter((c) => c.some((a) => a.includes('esnap-probe')))).toHaveLength(2);
      expect(await snapshotsOnPool(e().dataset)).toEqual([`${e().dataset}/vm1/disk0@es-1`]);
    });

    it('stores the name in es:snapname and lists snapshots made outside esnap with none', async () => {
      await e().driver.createDisk(d0);
      const name = 'before upgrade: ünïcödé $(id) ;`x`';
      await e().driver.create(d0, 'es-1', { name });
      const ds = `${e().dataset}/vm1/disk0`;
      expect(await zfsCheck(['zfs', 'get', '-Hp', '-o', 'value', 'es:snapname', `${ds}@es-1`])).toBe(`${name}\n`);
      await zfsCheck(['zfs', 'snapshot', `${ds}@manual`]);
      const list = await e().driver.list(d0);
      expect(list.map((s) => [s.id, s.name])).toEqual([
        ['es-1', name],
        ['manual', null],
      ]);
      // Without es:created the time is zfs's whole second, raised to the snapshot before it when
      // both fall in the same second (it was made after es-1, it must not look older).
      const creation = Number(await zfsCheck(['zfs', 'get', '-Hp', '-o', 'value', 'creation', `${ds}@manual`])) * 1000;
      expect(list[1]!.created.getTime()).toBe(Math.max(creation, list[0]!.created.getTime()));
      await expectStorageError(e().driver.create(d0, 'es-2', { name: 'tab\there' }), 'invalid_name');
      await expectStorageError(e().driver.create(d0, 'es-2', { name: 'line\nbreak' }), 'invalid_name');
    });

    it('lists only the snapshots of the disk itself, not those of datasets below it', async () => {
      const outer: DiskRef = { path: 'a', sizeBytes: MiB };
      const inner: DiskRef = { path: 'a/b', sizeBytes: MiB };
      await e().driver.createDisk(outer);
      await e().driver.createDisk(inner);
      await e().driver.create(outer, 'es-1', { name: 'outer' });
      await e().driver.create(inner, 'es-2', { name: 'inner' });
      expect((await e().driver.list(outer)).map((s) => s.id)).toEqual(['es-1']);
      expect((await e().driver.list(inner)).map((s) => s.id)).toEqual(['es-2']);
      // Deleting the outer disk keeps the inner one (the dataset stays as its parent).
      await e().driver.deleteDisk(outer);
      expect(await e().driver.diskExists(outer)).toBe(false);
      expect(await e().driver.list(outer)).toEqual([]);
      expect((await e().driver.list(inner)).map((s) => s.name)).toEqual(['inner']);
    });

    it('rollback -r destroys the newer snapshots on the pool', async () => {
      await e().driver.createDisk(d0);
      for (const id of ['es-1', 'es-2', 'as-3']) await e().driver.create(d0, id, { name: id });
      await e().driver.rollback(d0, 'es-1');
      expect(await snapshotsOnPool(e().dataset)).toEqual([`${e().dataset}/vm1/disk0@es-1`]);
      expect(e().runner.calls).toContainEqual(['zfs', 'rollback', '-r', `${e().dataset}/vm1/disk0@es-1`]);
    });

    it('destroys one snapshot per call on zfs-fuse', async () => {
      await e().driver.createDisk(d0);
      for (const id of ['es-1', 'es-2', 'es-3']) await e().driver.create(d0, id, { name: id });
      const before = e().runner.count('destroy');
      await e().driver.destroy(d0, ['es-1', 'es-3', 'es-3']);
      expect(e().runner.count('destroy') - before).toBe(2);
      expect((await e().driver.list(d0)).map((s) => s.id)).toEqual(['es-2']);
    });

    it('retries "dataset is busy" with backoff, then reports busy', async () => {
      await e().driver.createDisk(d0);
      await e().driver.create(d0, 'es-1', { name: 'one' });
      const snap = `${e().dataset}/vm1/disk0@es-1`;
      await zfsCheck(['zfs', 'hold', 'keep', snap]);
      try {
        const before = e().runner.count('destroy');
        const started = Date.now();
        await expectStorageError(e().driver.destroy(d0, ['es-1']), 'busy');
        expect(e().runner.count('destroy') - before).toBe(4); // the first try and 3 retries
        expect(Date.now() - started).toBeGreaterThanOrEqual(140);
        // A hold released while the driver waits: the retry succeeds.
        const destroying = e().driver.destroy(d0, ['es-1']);
        await sleep(30);
        await zfsCheck(['zfs', 'release', 'keep', snap]);
        await destroying;
      } finally {
        await runner.run(['zfs', 'release', 'keep', snap]);
      }
      expect(await e().driver.list(d0)).toEqual([]);
    });

    it('refuses names zfs or a shell could misread before running any command', async () => {
      await e().driver.createDisk(d0);
      const calls = e().runner.calls.length;
      const badIds = [...BAD_IDS, 'es-1@es-2', 'es-1,es-2', 'es-1%es-2', '$(id)', 'es-1`id`'];
      const badPaths = [...BAD_PATHS, 'a b', 'vm1@x', 'vm1,x', 'vm1;x', '$(id)', 'x'.repeat(300), 'vm1/disk0-esnap-restore-1795770372000'];
      for (const id of badIds) {
        await expectStorageError(e().driver.create(d0, id, { name: 'x' }), 'invalid_name');
        await expectStorageError(e().driver.createMany([d0], id, { name: 'x' }), 'invalid_name');
      }
      for (const path of badPaths) {
        await expectStorageError(e().driver.createDisk({ path, sizeBytes: MiB }), 'invalid_name');
        await expectStorageError(e().driver.list({ path }), 'invalid_name');
        await expectStorageError(e().driver.restore(d0, 'es-1', { path }), 'invalid_name');
      }
      expect(e().runner.calls.length).toBe(calls);
      expect(() => new ZfsDriver({ dataset: 'pool/a b', runner })).toThrow(/Invalid storage dataset/);
      expect(() => new ZfsDriver({ dataset: 'pool/x@y', runner })).toThrow(/Invalid storage dataset/);
    });

    it('takes the same snapshot on several disks, one call per disk here, all or none', async () => {
      const disks = ['vm1/disk0', 'vm1/disk1', 'vm1/disk2'].map((path) => ({ path, sizeBytes: MiB }));
      for (const d of disks) await e().driver.createDisk(d);
      const before = e().runner.count('snapshot');
      const made = await e().driver.createMany(disks, 'es-1', { name: 'all' });
      expect(e().runner.count('snapshot') - before).toBe(3);
      expect(made.map((s) => [s.id, s.name])).toEqual(Array(3).fill(['es-1', 'all']));
      for (const s of made) expect(Number.isSafeInteger(s.size)).toBe(true);
      // es-2 exists on the last disk only: the two made before it are destroyed again.
      await e().driver.create(disks[2]!, 'es-2', { name: 'taken' });
      await expectStorageError(e().driver.createMany(disks, 'es-2', { name: 'all' }), 'snapshot_exists');
      for (const d of disks.slice(0, 2)) expect((await e().driver.list(d)).map((s) => s.id)).toEqual(['es-1']);
      expect((await e().driver.list(disks[2]!)).map((s) => [s.id, s.name])).toEqual([
        ['es-1', 'all'],
        ['es-2', 'taken'],
      ]);
      // A missing disk in the middle: nothing is left on the others.
      await expectStorageError(e().driver.createMany([disks[0]!, { path: 'nope' }, disks[1]!], 'es-3', { name: 'x' }), 'disk_missing');
      expect(await snapshotsOnPool(e().dataset)).toHaveLength(4);
    });

    it('restore destroys the target snapshots and leaves no aside dataset', async () => {
      const src: DiskRef = { path: 'vm1/disk0', sizeBytes: MiB };
      const dst: DiskRef = { path: 'vm2/disk0', sizeBytes: MiB };
      await e().driver.createDisk(src);
      await e().driver.createDisk(dst);
      await e().io.write(src, 0, Buffer.from('source'));
      await e().driver.create(src, 'es-1', { name: 'one' });
      await e().driver.create(dst, 'es-7', { name: 'target' });
      await e().driver.restore(src, 'es-1', dst);
      expect((await e().io.read(dst, 0, 6)).toString()).toBe('source');
      expect(await e().driver.list(dst)).toEqual([]);
      const datasets = await zfsCheck(['zfs', 'list', '-H', '-o', 'name', '-r', e().dataset]);
      expect(datasets.split('\n').filter(Boolean).map((n) => n.slice(e().dataset.length))).toEqual(['', '/vm1', '/vm1/disk0', '/vm2', '/vm2/disk0']);
    });

    it('init() repairs a restore that crashed half way', async () => {
      const dst: DiskRef = { path: 'vm2/disk0', sizeBytes: MiB };
      await e().driver.createDisk(dst);
      await e().io.write(dst, 0, Buffer.from('original'));
      await e().driver.create(dst, 'es-1', { name: 'kept' });
      const ds = `${e().dataset}/vm2/disk0`;
      // Crashed after the rename, before zfs recv finished: the original must come back.
      await zfsCheck(['zfs', 'umount', ds]);
      await zfsCheck(['zfs', 'rename', ds, `${ds}-esnap-restore-1795770372000`]);
      const again = new ZfsDriver({ dataset: e().dataset, runner });
      await again.init();
      expect((await zfsIO(again).read(dst, 0, 8)).toString()).toBe('original');
      expect((await again.list(dst)).map((s) => s.name)).toEqual(['kept']);
      // Crashed after recv: the target is whole, the aside copy is garbage.
      await zfsCheck(['zfs', 'create', `${ds}-esnap-restore-1795770373000`]);
      await new ZfsDriver({ dataset: e().dataset, runner }).init();
      expect(await zfsCheck(['zfs', 'list', '-H', '-o', 'name', '-r', `${e().dataset}/vm2`])).not.toMatch(/esnap-restore/);
      // Crashed between the unmount and the rename (found by the chaos run): the disk is there but
      // unmounted, and init() mounts it again.
      await zfsCheck(['zfs', 'umount', ds]);
      const third = new ZfsDriver({ dataset: e().dataset, runner });
      await third.init();
      expect((await zfsIO(third).read(dst, 0, 8)).toString()).toBe('original');
    });

    it('reports the storage size and free bytes zfs reports', async () => {
      const props = await zfsCheck(['zfs', 'get', '-Hp', '-o', 'value', 'used,available', e().dataset]);
      const [used, avail] = props.trim().split('\n').map(Number) as [number, number];
      const s = await e().driver.stats();
      expect(s.free).toBeLessThanOrEqual(avail + MiB);
      expect(Math.abs(s.size - (used + avail))).toBeLessThan(4 * MiB);
    });
  });

  describe('a small pool running out of space', () => {
    let small: ZfsPool | undefined;
    let env: ZfsEnv | undefined;
    const e = (): ZfsEnv => env ?? expect.unreachable('no env');
    beforeAll(async () => {
      small = await makeZfsPool(64);
      env = await zfsEnv(small, { busyRetryDelaysMs: [20, 40, 80] });
      await env.driver.init();
    });
    afterAll(async () => {
      await env?.cleanup().catch(() => undefined);
      await small?.cleanup();
    });
    const available = async (): Promise<number> => Number(await zfsCheck(['zfs', 'get', '-Hp', '-o', 'value', 'available', small!.name]));

    it('a restore that does not fit fails with no_space and puts the target back', async () => {
      const src: DiskRef = { path: 'src', sizeBytes: 20 * MiB };
      const dst: DiskRef = { path: 'dst', sizeBytes: 20 * MiB };
      await e().driver.createDisk(src);
      await e().driver.createDisk(dst);
      await fillRandom(await e().driver.imagePathOf(src), 20 * MiB);
      await e().driver.create(src, 'es-1', { name: 'full' });
      await e().io.write(dst, 0, Buffer.from('keep me'));
      await e().driver.create(dst, 'es-2', { name: 'target' });
      expect(await available()).toBeLessThan(20 * MiB);
      const before = await e().fingerprint();
      await expectStorageError(e().driver.restore(src, 'es-1', dst), 'no_space');
      expect(await e().fingerprint()).toBe(before);
      expect((await e().io.read(dst, 0, 7)).toString()).toBe('keep me');
      expect((await e().driver.list(dst)).map((s) => s.id)).toEqual(['es-2']);
    });

    it('a full pool refuses snapshots and disks with no_space, leaving nothing behind', async () => {
      const d: DiskRef = { path: 'src', sizeBytes: 20 * MiB };
      const filler = join(small!.mountpoint, 'filler');
      const fh = await open(filler, 'w');
      for (let off = 0; ; off += MiB) {
        const wrote = await fh.write(randomBytes(MiB), 0, MiB, off).then(
          () => true,
          (err: NodeJS.ErrnoException) => (err.code === 'ENOSPC' ? false : Promise.reject(err)),
        );
        if (!wrote) break;
      }
      await fh.close();
      // zfs accounts freed and written space at the next transaction group (a few seconds).
      for (let i = 0; i < 100 && (await available()) > 0; i++) await sleep(200);
      const before = await e().fingerprint();
      await expectStorageError(e().driver.create(d, 'es-3', { name: 'x' }), 'no_space');
      await expectStorageError(e().driver.createDisk({ path: 'vm9/disk0', sizeBytes: MiB }), 'no_space');
      expect(await e().fingerprint()).toBe(before);
      expect((await e().driver.list(d)).map((s) => s.id)).toEqual(['es-1']);
    });
  });
});

describe('zfs commands for the capabilities zfs-fuse lacks (OpenZFS), by argv', () => {
  const answers = (argv: readonly string[]): RunResult | undefined => {
    if (argv[1] === 'get' && argv.includes('written')) return ok(argv.slice(6).map((n) => `${n}\t4096`).join('\n'));
    if (argv[1] === 'destroy' && argv[2] === '-n') return { code: 1, stdout: '', stderr: 'could not find any snapshots to destroy; check snapshot names.\n', durationMs: 1 };
    if (argv[1] === 'snapshot' && argv.length > 3 && argv[2]!.includes('esnap-probe')) {
      return { code: 255, stdout: '', stderr: `cannot open '${argv[2]!.split('@')[0]}': dataset does not exist\nusage:\n\tsnapshot [-r] [-o property=value] ... <filesystem|volume>@<snap> ...\n`, durationMs: 1 };
    }
    return ok();
  };

  it('detects the full table from OpenZFS answers', async () => {
    const fake = new RecordingRunner(answers);
    expect(await detectCapabilities((argv) => fake.run(argv), 'tank/vms')).toEqual(OPENZFS);
  });

  it('snapshots several disks in ONE zfs snapshot call when multiSnapshot is on', async () => {
    const fake = new RecordingRunner(answers);
    const driver = new ZfsDriver({ dataset: 'tank/vms', runner: fake, capabilities: OPENZFS });
    await driver.init();
    fake.calls.length = 0;
    const made = await driver.createMany([{ path: 'web01-disk0' }, { path: 'web01-disk1' }], 'es-5', { name: 'all disks' });
    const snapshots = fake.calls.filter((c) => c[1] === 'snapshot');
    expect(snapshots).toHaveLength(1);
    expect(snapshots[0]).toEqual([
      'zfs',
      'snapshot',
      '-o',
      'es:snapname=all disks',
      '-o',
      expect.stringMatching(/^es:created=\d{13}$/),
      'tank/vms/web01-disk0@es-5',
      'tank/vms/web01-disk1@es-5',
    ]);
    expect(made.map((s) => [s.id, s.size])).toEqual([
      ['es-5', 4096],
      ['es-5', 4096],
    ]);
    expect(driver.capabilities).toEqual({ rollbackKeepsNewer: false, batchDestroy: true });
  });

  it('builds the parsable per-dataset list and parses it', () => {
    expect(listCommand(OPENZFS, 'tank/vms/d')).toEqual(
      ['zfs', 'list', '-t', 'snapshot', '-H', '-p', '-o', 'name,creation,createtxg,written,es:snapname,es:created', '-d', '1', 'tank/vms/d'],
    );
    const out = 'tank/vms/d@es-1\t1795770372\t12\t4096\tbefore upgrade\t1795770372123\ntank/vms/d@x\t1795770380\t15\t0\t-\t-\n';
    expect(parseList(OPENZFS, 'tank/vms/d', out)).toEqual([
      { id: 'es-1', creation: 1795770372, txg: 12, size: 4096, snapname: 'before upgrade', createdMs: 1795770372123 },
      { id: 'x', creation: 1795770380, txg: 15, size: 0, snapname: null, createdMs: null },
    ]);
  });

  it('parses zfs get -Hp -r output, keeping only the dataset\'s own snapshots', () => {
    const caps: ZfsCapabilities = { ...OPENZFS, listParsable: false, sizeProperty: 'used' };
    expect(listCommand(caps, 'p/d')).toEqual(['zfs', 'get', '-Hp', '-r', '-o', 'name,property,value', 'creation,createtxg,used,es:snapname,es:created', 'p/d']);
    const out = [
      ...['p/d\tcreation\t1', 'p/d\tcreatetxg\t1', 'p/d\tused\t9'],
      ...['p/d@es-1\tcreation\t1795770372', 'p/d@es-1\tcreatetxg\t12', 'p/d@es-1\tused\t0', 'p/d@es-1\tes:snapname\tone', 'p/d@es-1\tes:created\t-'],
      ...['p/d/child@es-2\tcreation\t1795770373', 'p/d/child@es-2\tcreatetxg\t13', 'p/d/child@es-2\tused\t0'],
      ...['p/dx@es-3\tcreation\t1', 'p/dx@es-3\tcreatetxg\t14', 'p/dx@es-3\tused\t1'],
    ].join('\n');
    expect(parseList(caps, 'p/d', out)).toEqual([{ id: 'es-1', creation: 1795770372, txg: 12, size: 0, snapname: 'one', createdMs: null }]);
  });

  it('batches comma destroys under the argument limit, one per id without commaDestroy', () => {
    const ids = Array.from({ length: 100 }, (_, i) => `es-${i + 1}`);
    expect(destroyCommands(OPENZFS, 'tank/vms/d', ids)).toEqual([['zfs', 'destroy', `tank/vms/d@${ids.join(',')}`]]);
    const many = Array.from({ length: 1000 }, (_, i) => `as-${1_000_000_000 + i}`);
    const batches = destroyCommands(OPENZFS, 'tank/vms/d', many);
    expect(batches.length).toBeGreaterThan(1);
    expect(batches.flatMap((b) => b[2]!.split('@')[1]!.split(','))).toEqual(many);
    for (const b of batches) expect(b[2]!.length).toBeLessThanOrEqual(4000);
    expect(destroyCommands({ ...OPENZFS, commaDestroy: false }, 'p/d', ['es-1', 'es-2'])).toEqual([
      ['zfs', 'destroy', 'p/d@es-1'],
      ['zfs', 'destroy', 'p/d@es-2'],
    ]);
    expect(snapshotCommands({ ...OPENZFS, multiSnapshot: false }, ['p/a@es-1', 'p/b@es-2'], ['es:snapname=x']).map((c) => c.argv)).toEqual([
      ['zfs', 'snapshot', '-o', 'es:snapname=x', 'p/a@es-1'],
      ['zfs', 'snapshot', '-o', 'es:snapname=x', 'p/b@es-2'],
    ]);
    // One call per pool: OpenZFS takes several snapshots in one call only within one pool.
    expect(snapshotCommands(OPENZFS, ['p/a@es-1', 'q/b@es-2', 'p/c/d@es-3', 'p@es-4'], ['es:snapname=x']).map((c) => c.argv)).toEqual([
      ['zfs', 'snapshot', '-o', 'es:snapname=x', 'p/a@es-1', 'p/c/d@es-3', 'p@es-4'],
      ['zfs', 'snapshot', '-o', 'es:snapname=x', 'q/b@es-2'],
    ]);
  });
});

describe('NodeCommandRunner.pipe (used by zfs send | zfs recv)', () => {
  it('feeds the producer into the consumer, arguments literally', async () => {
    const r = await runner.pipe(['printf', '%s', '$(id) `x` ; | *'], ['tr', 'a-z', 'A-Z']);
    expect(r.consumer).toMatchObject({ code: 0, stdout: '$(ID) `X` ; | *' });
    expect(r.producer).toMatchObject({ code: 0, stdout: '' });
  });

  it('streams more than any buffer holds', async () => {
    const r = await runner.pipe(['head', '-c', String(64 * MiB), '/dev/zero'], ['wc', '-c']);
    expect(r.consumer.stdout.trim()).toBe(String(64 * MiB));
  });

  it('ends the producer when the consumer stops reading, as a shell pipe does', async () => {
    const started = Date.now();
    const r = await runner.pipe(['yes'], ['head', '-c', '10'], { timeoutMs: 10_000 });
    expect(r.consumer).toMatchObject({ code: 0, stdout: 'y\ny\ny\ny\ny\n' });
    expect(r.producer.code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('reports both exit codes and stderr', async () => {
    const r = await runner.pipe(['sh', '-c', 'echo out; echo perr >&2; exit 3'], ['sh', '-c', 'cat >/dev/null; echo cerr >&2; exit 4']);
    expect(r.producer).toMatchObject({ code: 3, stderr: 'perr\n' });
    expect(r.consumer).toMatchObject({ code: 4, stderr: 'cerr\n' });
  });

  it('kills both at the timeout, and fails when one program does not exist', async () => {
    const started = Date.now();
    await expect(runner.pipe(['sleep', '30'], ['cat'], { timeoutMs: 200 })).rejects.toThrow(/timed out after 200 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
    const err = await runner.pipe(['yes'], ['esnap-no-such-program']).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/Cannot run "esnap-no-such-program"/);
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('refuses an already aborted signal and aborts a running pipe', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(runner.pipe(['true'], ['true'], { signal: ac.signal })).rejects.toThrow(/aborted/);
    const ac2 = new AbortController();
    const running = runner.pipe(['sleep', '30'], ['cat'], { signal: ac2.signal });
    setTimeout(() => ac2.abort(), 50);
    await expect(running).rejects.toThrow(/aborted/);
  });
});
