/**
 * Restores from a backup stream into qcow2 and zfs disks (DiskWritable of src/storage/stream.ts),
 * on real qemu-img and zfs-fuse: the bytes switch in on commit only, whole and of the disk's
 * size, and the disk's own snapshots stay; abort and a short stream leave the old bytes and
 * nothing aside. A writer killed with SIGKILL (its process group: qemu-img with it) mid-write, or
 * (qcow2) while its commit's `qemu-img convert` runs, leaves the old bytes after the next init()
 * (what the agent runs first when it starts), which removes what the kill left.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { Qcow2Driver } from '../../src/storage/qcow2/qcow2.driver.js';
import { ZfsDriver } from '../../src/storage/zfs/zfs.driver.js';
import { RESTORE_PROP, RESTORE_TEMP } from '../../src/storage/zfs/zfs.restore.js';
import type { DiskRef } from '../../src/storage/driver.js';
import { diskWriterOf, type StreamingDriver } from '../../src/storage/stream.js';
import { platformUnavailable } from '../platform/require.js';
import { qemuUnavailable } from '../platform/qemu.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const runner = new NodeCommandRunner();
const DIST = resolve('dist');
const CHILD = resolve('test/storage/restore-write.child.mjs');

async function must(argv: string[]): Promise<string> {
  const r = await runner.run(argv, { env: { LC_ALL: 'C' } });
  expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** Starts the child in a process group of its own; resolves once it printed `until`, then SIGKILLs the group. */
async function killAt(args: string[], until: string): Promise<string> {
  const child = spawn(process.execPath, [CHILD, DIST, ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  await new Promise<void>((res, rej) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes(until)) res();
    });
    child.once('exit', () => rej(new Error(`child exited before "${until}": ${out} ${err}`)));
  });
  process.kill(-child.pid!, 'SIGKILL');
  await exited;
  return out;
}

const bytes = (fill: number): Buffer => Buffer.alloc(SIZE, fill);

/** An aborted write and a short one (refused on commit); the caller checks that both left the disk as it was. */
async function abortAndShort(d: Pick<StreamingDriver, 'openDiskWrite'>, disk: DiskRef): Promise<void> {
  const aborted = await d.openDiskWrite(disk);
  aborted.stream.write(Buffer.alloc(MiB, 9));
  await aborted.abort();
  const short = await d.openDiskWrite(disk);
  await pipeline(Readable.from([Buffer.alloc(SIZE - 1, 7)]), short.stream);
  await expect(short.commit()).rejects.toThrow(/stream carried/);
}

/** A whole image of `fill` bytes written and committed. */
async function writeWhole(d: Pick<StreamingDriver, 'openDiskWrite'>, disk: DiskRef, fill: number): Promise<void> {
  const w = await d.openDiskWrite(disk);
  await pipeline(Readable.from([bytes(fill)]), w.stream);
  await w.commit();
}

/** Where the child stops to be killed, by what it prints there (restore-write.child.mjs). */
const KILL_AT = { write: 'written', commit: 'converting' } as const;

/** A child's restore write into a disk: the driver kind, its storage (root or dataset), the disk, and a new driver on the same storage. */
interface Writer<D> {
  readonly kind: 'qcow2' | 'zfs';
  readonly where: string;
  readonly disk: string;
  driver(): D;
}

/**
 * The kill cases: a child writes a restore into the disk and is SIGKILLed with its process group
 * at `phase`; `killed` looks at what the kill left; then a new driver runs init(), as the
 * restarted agent would, and is returned.
 */
async function killThenInit<D extends { init(): Promise<void> }>(w: Writer<D>, phase: keyof typeof KILL_AT, killed: () => Promise<void>): Promise<D> {
  await killAt([w.kind, w.where, w.disk, String(SIZE), phase], KILL_AT[phase]);
  await killed();
  const again = w.driver();
  await again.init();
  return again;
}


describe('restore writes into qcow2 disks (qemu-img)', async () => {
  const reason = await qemuUnavailable();
  if (reason !== null) return platformUnavailable('needs qemu-img', reason);
  let root: string;
  let d: Qcow2Driver;
  const disk = { path: 'vm1/disk0', sizeBytes: SIZE };
  const image = (): string => join(root, disk.path);
  /** The guest-visible bytes (qemu-img convert to raw). */
  const guest = async (): Promise<Buffer> => {
    const out = join(root, 'guest.raw');
    await must(['qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'raw', image(), out]);
    const b = await readFile(out);
    await rm(out);
    return b;
  };
  const writer = (): Writer<Qcow2Driver> => ({ kind: 'qcow2', where: root, disk: disk.path, driver: () => new Qcow2Driver({ root, runner }) });
  const leftovers = async (): Promise<string[]> => (await readdir(join(root, '.esnap'))).filter((f) => f.endsWith('.raw'));
  const writeGuest = async (fill: number): Promise<void> => {
    const raw = join(root, 'fill.raw');
    await writeFile(raw, bytes(fill));
    await must(['qemu-img', 'convert', '-n', '-f', 'raw', '-O', 'qcow2', raw, image()]);
    await rm(raw);
  };

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'esnap-rw-qcow2-'));
    d = new Qcow2Driver({ root, runner });
    await d.init();
    await d.createDisk(disk);
    await writeGuest(1);
    await d.create(disk, 'es-1', { name: 'before' });
    await writeGuest(2);
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('writes on commit only, keeps the disk snapshots; abort and a short stream keep the old bytes', async () => {
    expect(diskWriterOf(d)).not.toBeNull();
    await abortAndShort(d, disk);
    expect((await guest()).equals(bytes(2))).toBe(true);
    expect(await leftovers()).toEqual([]);

    await writeWhole(d, disk, 5);
    expect((await guest()).equals(bytes(5))).toBe(true);
    expect(await leftovers()).toEqual([]);
    expect((await d.list(disk)).map((s) => s.id)).toEqual(['es-1']);
    await d.rollback(disk, 'es-1');
    expect((await guest()).equals(bytes(1))).toBe(true);
    await writeGuest(2);
  }, 120_000);

  it('SIGKILL mid-write leaves the raw copy aside; init() removes it, the disk keeps its bytes', async () => {
    await killThenInit(writer(), 'write', async () => {
      expect((await leftovers()).length).toBe(1);
      expect((await guest()).equals(bytes(2))).toBe(true);
    });
    expect(await leftovers()).toEqual([]);
    expect((await guest()).equals(bytes(2))).toBe(true);
  }, 120_000);

  it('SIGKILL while the commit converts: init() undoes it, the disk has its old bytes', async () => {
    const again = await killThenInit(writer(), 'commit', async () => {
      const info = JSON.parse(await must(['qemu-img', 'info', '-U', '--output=json', image()])) as { snapshots?: Array<{ name: string }> };
      expect(info.snapshots?.map((s) => s.name)).toContain('esnap-restore-undo');
    });
    expect((await guest()).equals(bytes(2))).toBe(true);
    expect(await leftovers()).toEqual([]);
    expect((await again.list(disk)).map((s) => s.id)).toEqual(['es-1']);
  }, 120_000);
});

describe('restore writes into zfs disks (zfs-fuse)', async () => {
  const reason = await zfsUnavailable();
  if (reason !== null) return platformUnavailable('needs zfs-fuse', reason);
  let pool: ZfsPool;
  let d: ZfsDriver;
  let dataset: string;
  const disk = { path: 'vm1-disk0', sizeBytes: SIZE };
  let image: string;
  const writer = (): Writer<ZfsDriver> => ({ kind: 'zfs', where: dataset, disk: disk.path, driver: () => new ZfsDriver({ dataset, runner }) });
  const leftover = async (): Promise<{ file: boolean; prop: string }> => ({
    file: (await readdir(join(image, '..'))).includes(RESTORE_TEMP),
    prop: (await must(['zfs', 'get', '-H', '-o', 'value', RESTORE_PROP, `${dataset}/${disk.path}`])).trim(),
  });

  beforeAll(async () => {
    pool = await makeZfsPool(256);
    dataset = `${pool.name}/vms`;
    await must(['zfs', 'create', dataset]);
    d = new ZfsDriver({ dataset, runner });
    await d.init();
    await d.createDisk(disk);
    image = await d.imagePathOf(disk);
    await writeFile(image, bytes(1));
    await d.create(disk, 'es-1', { name: 'before' });
    await writeFile(image, bytes(2));
  }, 120_000);
  afterAll(async () => {
    await pool?.cleanup();
  });

  it('writes on commit only, keeps the disk snapshots; abort and a short stream keep the old bytes', async () => {
    await abortAndShort(d, disk);
    expect((await readFile(image)).equals(bytes(2))).toBe(true);
    expect(await leftover()).toEqual({ file: false, prop: '-' });

    await writeWhole(d, disk, 5);
    expect((await readFile(image)).equals(bytes(5))).toBe(true);
    expect(await leftover()).toEqual({ file: false, prop: '-' });
    expect((await d.list(disk)).map((s) => s.id)).toEqual(['es-1']);
    await d.rollback(disk, 'es-1');
    expect((await readFile(await d.imagePathOf(disk))).equals(bytes(1))).toBe(true);
    await writeFile(image, bytes(2));
  }, 120_000);

  it('SIGKILL mid-write leaves the file aside and the mark; init() removes both, the disk keeps its bytes', async () => {
    await killThenInit(writer(), 'write', async () => {
      expect(await leftover()).toEqual({ file: true, prop: RESTORE_TEMP });
      expect((await readFile(image)).equals(bytes(2))).toBe(true);
    });
    expect(await leftover()).toEqual({ file: false, prop: '-' });
    expect((await readFile(image)).equals(bytes(2))).toBe(true);
  }, 120_000);
});
