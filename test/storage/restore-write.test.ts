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
import { diskWriterOf } from '../../src/storage/stream.js';
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
    const aborted = await d.openDiskWrite(disk);
    aborted.stream.write(Buffer.alloc(MiB, 9));
    await aborted.abort();
    const short = await d.openDiskWrite(disk);
    await pipeline(Readable.from([Buffer.alloc(SIZE - 1, 7)]), short.stream);
    await expect(short.commit()).rejects.toThrow(/stream carried/);
    expect((await guest()).equals(bytes(2))).toBe(true);
    expect(await leftovers()).toEqual([]);

    const w = await d.openDiskWrite(disk);
    await pipeline(Readable.from([bytes(5)]), w.stream);
    await w.commit();
    expect((await guest()).equals(bytes(5))).toBe(true);
    expect(await leftovers()).toEqual([]);
    expect((await d.list(disk)).map((s) => s.id)).toEqual(['es-1']);
    await d.rollback(disk, 'es-1');
    expect((await guest()).equals(bytes(1))).toBe(true);
    await writeGuest(2);
  }, 120_000);

  it('SIGKILL mid-write leaves the raw copy aside; init() removes it, the disk keeps its bytes', async () => {
    await killAt(['qcow2', root, disk.path, String(SIZE), 'write'], 'written');
    expect((await leftovers()).length).toBe(1);
    expect((await guest()).equals(bytes(2))).toBe(true);
    const again = new Qcow2Driver({ root, runner });
    await again.init();
    expect(await leftovers()).toEqual([]);
    expect((await guest()).equals(bytes(2))).toBe(true);
  }, 120_000);

  it('SIGKILL while the commit converts: init() undoes it, the disk has its old bytes', async () => {
    await killAt(['qcow2', root, disk.path, String(SIZE), 'commit'], 'converting');
    const info = JSON.parse(await must(['qemu-img', 'info', '-U', '--output=json', image()])) as { snapshots?: Array<{ name: string }> };
    expect(info.snapshots?.map((s) => s.name)).toContain('esnap-restore-undo');
    const again = new Qcow2Driver({ root, runner });
    await again.init();
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
    const aborted = await d.openDiskWrite(disk);
    aborted.stream.write(Buffer.alloc(MiB, 9));
    await aborted.abort();
    const short = await d.openDiskWrite(disk);
    await pipeline(Readable.from([Buffer.alloc(SIZE - 1, 7)]), short.stream);
    await expect(short.commit()).rejects.toThrow(/stream carried/);
    expect((await readFile(image)).equals(bytes(2))).toBe(true);
    expect(await leftover()).toEqual({ file: false, prop: '-' });

    const w = await d.openDiskWrite(disk);
    await pipeline(Readable.from([bytes(5)]), w.stream);
    await w.commit();
    expect((await readFile(image)).equals(bytes(5))).toBe(true);
    expect(await leftover()).toEqual({ file: false, prop: '-' });
    expect((await d.list(disk)).map((s) => s.id)).toEqual(['es-1']);
    await d.rollback(disk, 'es-1');
    expect((await readFile(await d.imagePathOf(disk))).equals(bytes(1))).toBe(true);
    await writeFile(image, bytes(2));
  }, 120_000);

  it('SIGKILL mid-write leaves the file aside and the mark; init() removes both, the disk keeps its bytes', async () => {
    await killAt(['zfs', dataset, disk.path, String(SIZE), 'write'], 'written');
    expect(await leftover()).toEqual({ file: true, prop: RESTORE_TEMP });
    expect((await readFile(image)).equals(bytes(2))).toBe(true);
    const again = new ZfsDriver({ dataset, runner });
    await again.init();
    expect(await leftover()).toEqual({ file: false, prop: '-' });
    expect((await readFile(image)).equals(bytes(2))).toBe(true);
  }, 120_000);
});
