/**
 * The file driver's streams (src/storage/stream.ts) and the runner's spawn: a snapshot read gives
 * its bytes; a disk write is switched in on commit only, whole and of the disk's size; abort, a
 * short stream or a killed writer leave the old bytes and nothing aside.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileDriver } from '../../src/storage/file/file.driver.js';
import { BtrfsDriver } from '../../src/storage/btrfs/btrfs.driver.js';
import { loopFsUnavailable, makeLoopFs, type LoopFs } from '../platform/loopfs.js';
import { platformUnavailable } from '../platform/require.js';
import { qemuUnavailable } from '../platform/qemu.js';
import { qcow2Env, type Qcow2Env } from './qcow2.helpers.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { streamingOf } from '../../src/storage/stream.js';

const SIZE = 64 * 1024;

describe('file driver streams', () => {
  let root: string;
  let d: FileDriver;
  const disk = { path: 'vm1/disk0', sizeBytes: SIZE };
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'esnap-stream-'));
    d = new FileDriver({ root, runner: new NodeCommandRunner() });
    await d.init();
    await d.createDisk(disk);
    await writeFile(join(root, disk.path), Buffer.alloc(SIZE, 1));
    await d.create(disk, 'is-1', { name: 'is-1' });
    await writeFile(join(root, disk.path), Buffer.alloc(SIZE, 2));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  const leftovers = async (): Promise<string[]> => (await readdir(join(root, 'vm1'))).filter((f) => f.startsWith('.'));

  it('is a streaming driver; a snapshot read gives the snapshot bytes', async () => {
    expect(streamingOf(d)).toBe(d);
    const r = await d.readSnapshotStream(disk, 'is-1');
    const chunks: Buffer[] = [];
    for await (const c of r.stream) chunks.push(c as Buffer);
    await r.done();
    expect(r.size).toBe(SIZE);
    expect(Buffer.concat(chunks).equals(Buffer.alloc(SIZE, 1))).toBe(true);
  });

  it('a write is switched in on commit; abort and a short stream leave the old bytes', async () => {
    const aborted = await d.openDiskWrite(disk);
    aborted.stream.write(Buffer.alloc(SIZE / 2, 9));
    await aborted.abort();
    expect((await readFile(join(root, disk.path))).equals(Buffer.alloc(SIZE, 2))).toBe(true);

    const short = await d.openDiskWrite(disk);
    await pipeline(Readable.from([Buffer.alloc(SIZE - 1, 7)]), short.stream);
    await expect(short.commit()).rejects.toThrow(/stream carried/);
    expect((await readFile(join(root, disk.path))).equals(Buffer.alloc(SIZE, 2))).toBe(true);

    const w = await d.openDiskWrite(disk);
    await pipeline(Readable.from([Buffer.alloc(SIZE, 5)]), w.stream);
    await w.commit();
    expect((await readFile(join(root, disk.path))).equals(Buffer.alloc(SIZE, 5))).toBe(true);
    expect(await leftovers()).toEqual([]);
    expect(await readdir(join(root, '.esnap-journal')).catch(() => [])).toEqual([]);
  });

  it('a temporary left by a crash is removed by init()', async () => {
    const w = await d.openDiskWrite(disk);
    w.stream.write(Buffer.alloc(100, 3));
    await new Promise((r) => setTimeout(r, 20));
    // The process "dies" here: a fresh driver on the same root recovers.
    const again = new FileDriver({ root, runner: new NodeCommandRunner() });
    await again.init();
    expect(await leftovers()).toEqual([]);
    expect((await readFile(join(root, disk.path))).equals(Buffer.alloc(SIZE, 5))).toBe(true);
    w.stream.destroy();
  });
});

describe('btrfs driver streams (loop-mounted btrfs)', async () => {
  const reason = await loopFsUnavailable('btrfs');
  if (reason !== null) return platformUnavailable('needs a btrfs loop filesystem', reason);
  let fs: LoopFs;
  let d: BtrfsDriver;
  const disk = { path: 'vm1/disk0', sizeBytes: SIZE };
  const image = (): string => join(fs.mountpoint, 'r', disk.path, 'disk.img');
  beforeAll(async () => {
    fs = await makeLoopFs('btrfs', 256);
    d = new BtrfsDriver({ root: join(fs.mountpoint, 'r'), runner: new NodeCommandRunner() });
    await d.init();
    await d.createDisk(disk);
    await writeFile(image(), Buffer.alloc(SIZE, 1));
    await d.create(disk, 'is-1', { name: 'is-1' });
    await writeFile(image(), Buffer.alloc(SIZE, 2));
  });
  afterAll(() => fs?.cleanup());

  it('reads a snapshot; a write goes in on commit only, a crash leaves the old disk', async () => {
    const r = await d.readSnapshotStream(disk, 'is-1');
    const chunks: Buffer[] = [];
    for await (const c of r.stream) chunks.push(c as Buffer);
    await r.done();
    expect(Buffer.concat(chunks).equals(Buffer.alloc(SIZE, 1))).toBe(true);

    const short = await d.openDiskWrite(disk);
    await pipeline(Readable.from([Buffer.alloc(10, 7)]), short.stream);
    await expect(short.commit()).rejects.toThrow(/stream carried/);
    expect((await readFile(image())).equals(Buffer.alloc(SIZE, 2))).toBe(true);

    const w = await d.openDiskWrite(disk);
    await pipeline(Readable.from([Buffer.alloc(SIZE, 5)]), w.stream);
    await w.commit();
    expect((await readFile(image())).equals(Buffer.alloc(SIZE, 5))).toBe(true);

    const cut = await d.openDiskWrite(disk);
    cut.stream.write(Buffer.alloc(100, 3));
    await new Promise((res) => setTimeout(res, 20));
    const again = new BtrfsDriver({ root: join(fs.mountpoint, 'r'), runner: new NodeCommandRunner() });
    await again.init();
    expect((await readdir(join(fs.mountpoint, 'r', 'vm1'))).sort()).toEqual(['disk0']);
    expect((await readFile(image())).equals(Buffer.alloc(SIZE, 5))).toBe(true);
    cut.stream.destroy();
  });
});

describe('qcow2 driver snapshot stream (qemu-img)', async () => {
  const reason = await qemuUnavailable();
  if (reason !== null) return platformUnavailable('needs qemu-img', reason);
  let e: Qcow2Env;
  const disk = { path: 'vm1/disk0', sizeBytes: SIZE };
  beforeAll(async () => {
    e = await qcow2Env();
    await e.driver.createDisk(disk);
    await e.io.write(disk, 0, Buffer.alloc(SIZE, 1));
    await e.driver.create(disk, 'is-1', { name: 'is-1' });
    await e.io.write(disk, 0, Buffer.alloc(SIZE, 2));
  });
  afterAll(() => e?.cleanup());

  it("reads the internal snapshot's raw bytes and removes its temporary copy", async () => {
    const r = await e.driver.readSnapshotStream(disk, 'is-1');
    const chunks: Buffer[] = [];
    for await (const c of r.stream) chunks.push(c as Buffer);
    await r.done();
    expect(Buffer.concat(chunks).equals(Buffer.alloc(SIZE, 1))).toBe(true);
    expect((await readdir(join(e.root, '.esnap'))).filter((n) => n.startsWith('stream-'))).toEqual([]);
  });
});

describe('NodeCommandRunner.spawn', () => {
  const runner = new NodeCommandRunner();
  it('streams stdin to a process and its stdout back', async () => {
    const c = runner.spawn(['cat'], { stdin: 'pipe', stdout: 'stream' });
    const out: Buffer[] = [];
    c.stdout!.on('data', (b: Buffer) => out.push(b));
    c.stdin!.end('hello');
    const r = await c.done;
    expect([r.code, Buffer.concat(out).toString()]).toEqual([0, 'hello']);
  });
  it('captures stdout by default; kill rejects done with the reason', async () => {
    expect((await runner.spawn(['echo', 'hi']).done).stdout).toBe('hi\n');
    const c = runner.spawn(['sleep', '30']);
    c.kill(new Error('stop it'));
    await expect(c.done).rejects.toThrow('stop it');
  });
});
