/**
 * The qcow2 driver with real qemu-img on a temp dir (offline): the error translator on recorded
 * QEMU texts, the driver contract (with and without qemu-storage-daemon), and what is special to
 * qcow2. The live path (a real QEMU holding the image) is in qcow2.live.test.ts.
 */
import { readFile, mkdir, mkdtemp, rm, stat, symlink, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QmpCommandError } from '../../src/guest/qmp.js';
import { StorageError, type DiskRef, type StorageErrorCode } from '../../src/storage/driver.js';
import { qemuToolError, qmpError } from '../../src/storage/qcow2/qcow2.errors.js';
import { parseIndex } from '../../src/storage/snapshot-index.js';
import { platformUnavailable } from '../platform/require.js';
import { qemuUnavailable } from '../platform/qemu.js';
import { driverContract, expectStorageError } from './driver-contract.js';
import { checkImage, fingerprint, MiB, pattern, qcow2Env, qcow2Target, run, tags, type Qcow2Env } from './qcow2.helpers.js';

const fixtureDir = join(import.meta.dirname, '../fixtures/qcow2');

describe('qcow2 error translation (texts recorded from QEMU 7.2)', async () => {
  const stderr = JSON.parse(await readFile(join(fixtureDir, 'stderr.json'), 'utf8')) as {
    cases: Array<{ name: string; exit: number; stderr: string }>;
  };
  const qmp = JSON.parse(await readFile(join(fixtureDir, 'qmp-errors.json'), 'utf8')) as {
    errors: Array<{ name: string; answer: { id: number; error: { class: string; desc: string } } }>;
  };
  const expected: Record<string, StorageErrorCode> = {
    'missing-image-info': 'disk_missing',
    'missing-image-snapshot': 'disk_missing',
    'missing-image-raw-probe': 'disk_missing',
    'missing-tag-apply': 'snapshot_missing',
    'missing-tag-delete': 'snapshot_missing',
    'missing-tag-convert': 'snapshot_missing',
    'not-qcow2-info': 'backend',
    'not-qcow2-snapshot': 'backend',
    'locked-snapshot-create': 'busy',
    'locked-snapshot-apply': 'busy',
    'locked-info': 'busy',
    'locked-raw-probe': 'busy',
    'locked-convert-target': 'busy',
    'locked-daemon': 'busy',
    'enospc-snapshot-create': 'no_space',
    'enospc-convert': 'no_space',
  };

  it('maps every recorded failing tool run to its code', () => {
    const failing = stderr.cases.filter((c) => c.exit !== 0);
    expect(failing.map((c) => c.name).sort()).toEqual(Object.keys(expected).sort());
    for (const c of failing) {
      const err = qemuToolError({ code: c.exit, stderr: c.stderr }, 'op');
      expect([c.name, err.code]).toEqual([c.name, expected[c.name]]);
      expect(err).toBeInstanceOf(StorageError);
      expect(err.message).toMatch(/^op: /);
      expect(err.message).not.toContain('\n');
    }
  });

  it('maps recorded QMP error answers (one per batch position) to their codes', () => {
    const codes = qmp.errors.map((e) => qmpError(new QmpCommandError('x', e.answer.error.class, e.answer.error.desc), 'op').code);
    expect(codes).toEqual(['snapshot_missing', 'snapshot_exists', 'backend', 'backend', 'no_space']);
  });

  it('keeps the first line of the text and falls back to the exit code', () => {
    expect(qemuToolError({ code: 3, stderr: '' }, 'op').message).toBe('op: exit code 3');
    expect(qemuToolError({ code: 1, stderr: 'qemu-img: something new\nmore' }, 'op')).toMatchObject({ code: 'backend', message: 'op: qemu-img: something new' });
  });
});

describe('qcow2 driver, offline (qemu-img on a temp dir)', async () => {
  const reason = await qemuUnavailable();
  if (reason !== null) return platformUnavailable('needs qemu-img and qemu-io', reason);

  driverContract('qcow2 offline', () => qcow2Target());
  driverContract('qcow2 offline without qemu-storage-daemon', () => qcow2Target(['qemu-storage-daemon']));

  let env: Qcow2Env | undefined;
  const e = (): Qcow2Env => env ?? expect.unreachable('no env');
  beforeEach(async () => {
    env = await qcow2Env();
  });
  afterEach(async () => {
    await env?.cleanup();
    env = undefined;
  });
  const disk: DiskRef = { path: 'vm1/disk0', sizeBytes: 8 * MiB };

  it('creates a qcow2 image of the exact size, never over an existing one', async () => {
    await e().driver.createDisk(disk);
    const info = JSON.parse((await run(['qemu-img', 'info', '--output=json', e().image(disk)])).stdout) as Record<string, unknown>;
    expect([info.format, info['virtual-size']]).toEqual(['qcow2', 8 * MiB]);
    const data = pattern(1);
    await e().io.write(disk, 0, data);
    await e().driver.createDisk({ ...disk, sizeBytes: 16 * MiB });
    expect((await e().io.read(disk, 0, data.length)).equals(data)).toBe(true);
    await expectStorageError(e().driver.createDisk({ path: 'odd', sizeBytes: 1000 }), 'backend');
    await expectStorageError(e().driver.createDisk({ path: 'none' }), 'backend');
    expect(await readdir(join(e().root, 'vm1'))).toEqual(['disk0']); // no temporary left
  });

  it('keeps names in the index .esnap/<disk>/.esnap-index and lists snapshots made outside esnap with name null', async () => {
    await e().driver.createDisk(disk);
    const info = await e().driver.create(disk, 'es-1', { name: 'with space "quoted" ü' });
    await run(['qemu-img', 'snapshot', '-c', 'manual tag', e().image(disk)]);
    expect(await readFile(join(e().root, '.esnap', 'vm1', 'disk0', '.esnap-index'), 'utf8')).toBe(
      '\n' + JSON.stringify({ id: 'es-1', name: 'with space "quoted" ü', created: info.created.toISOString() }),
    );
    const list = await e().driver.list(disk);
    expect(list.map((s) => [s.id, s.name, s.size])).toEqual([
      ['es-1', 'with space "quoted" ü', null],
      ['manual tag', null, null],
    ]);
    // A broken index loses labels, never snapshots.
    await writeFile(join(e().root, '.esnap', 'vm1', 'disk0', '.esnap-index'), '{broken');
    expect((await e().driver.list(disk)).map((s) => [s.id, s.name])).toEqual([['es-1', null], ['manual tag', null]]);
  });

  it('reports creation times from the image, to the millisecond', async () => {
    await e().driver.createDisk(disk);
    const info = await e().driver.create(disk, 'es-1', { name: 'one' });
    const raw = JSON.parse((await run(['qemu-img', 'info', '--output=json', e().image(disk)])).stdout) as {
      snapshots: Array<{ 'date-sec': number; 'date-nsec': number }>;
    };
    const s = raw.snapshots[0]!;
    const listed = (await e().driver.list(disk))[0]!;
    expect(listed.created.getTime()).toBe(s['date-sec'] * 1000 + Math.floor(s['date-nsec'] / 1e6));
    expect(Math.abs(listed.created.getTime() - info.created.getTime())).toBeLessThan(1000);
  });

  it('refuses a duplicate tag that qemu-img would accept, and destroys every copy of a duplicated tag', async () => {
    await e().driver.createDisk(disk);
    await run(['qemu-img', 'snapshot', '-c', 'es-5', e().image(disk)]);
    await run(['qemu-img', 'snapshot', '-c', 'es-5', e().image(disk)]); // qemu-img: rc 0, a second es-5
    await e().driver.create(disk, 'es-6', { name: 'six' });
    await expectStorageError(e().driver.create(disk, 'es-5', { name: 'again' }), 'snapshot_exists');
    expect(await tags(e().image(disk))).toEqual(['es-5', 'es-5', 'es-6']);
    await e().driver.destroy(disk, ['es-5']);
    expect(await tags(e().image(disk))).toEqual(['es-6']);
  });

  it('destroys several snapshots in one qemu-storage-daemon run, one snapshot with qemu-img', async () => {
    await e().driver.createDisk(disk);
    expect(e().driver.capabilities).toEqual({ rollbackKeepsNewer: true, batchDestroy: true });
    for (let i = 1; i <= 6; i++) await e().driver.create(disk, `es-${i}`, { name: `n${i}` });
    e().runner.calls.length = 0;
    await e().driver.destroy(disk, ['es-1', 'es-2', 'es-3', 'es-99']);
    expect(e().runner.ops()).toEqual(['info', 'qemu-storage-daemon']);
    e().runner.calls.length = 0;
    await e().driver.destroy(disk, ['es-4', 'es-98']);
    expect(e().runner.ops()).toEqual(['info', 'snapshot -d']);
    e().runner.calls.length = 0;
    await e().driver.destroy(disk, ['es-97']);
    expect(e().runner.ops()).toEqual(['info']);
    expect((await e().driver.list(disk)).map((s) => [s.id, s.name])).toEqual([['es-5', 'n5'], ['es-6', 'n6']]);
    await checkImage(e().image(disk));
    const index = parseIndex(await readFile(join(e().root, '.esnap', 'vm1', 'disk0', '.esnap-index'), 'utf8'));
    expect([...index].map(([id, entry]) => [id, entry.name])).toEqual([['es-5', 'n5'], ['es-6', 'n6']]);
  });

  it('without qemu-storage-daemon, says so in its capabilities and destroys one by one', async () => {
    const other = await qcow2Env(tmpdir(), ['qemu-storage-daemon']);
    try {
      expect(other.driver.capabilities).toEqual({ rollbackKeepsNewer: true, batchDestroy: false });
      await other.driver.createDisk(disk);
      for (const id of ['es-1', 'es-2', 'es-3']) await other.driver.create(disk, id, { name: id });
      other.runner.calls.length = 0;
      await other.driver.destroy(disk, ['es-1', 'es-3']);
      expect(other.runner.ops()).toEqual(['info', 'snapshot -d', 'snapshot -d']);
      expect(await tags(other.image(disk))).toEqual(['es-2']);
    } finally {
      await other.cleanup();
    }
  });

  it('restore writes into the existing target: its own snapshots survive, areas the snapshot lacks read as zeros', async () => {
    const src: DiskRef = { path: 'src', sizeBytes: 8 * MiB };
    const dst: DiskRef = { path: 'dst', sizeBytes: 8 * MiB };
    await e().driver.createDisk(src);
    await e().driver.createDisk(dst);
    const a = pattern(1);
    await e().io.write(src, 0, a);
    await e().driver.create(src, 'es-1', { name: 'one' });
    await e().io.write(src, 0, pattern(2));
    const d0 = pattern(3);
    const d1 = pattern(4);
    await e().io.write(dst, 0, d0);
    await e().io.write(dst, 4 * MiB, d1);
    await e().driver.create(dst, 'es-9', { name: 'dst own' });
    await e().io.write(dst, 4 * MiB, pattern(5));

    await e().driver.restore(src, 'es-1', dst);
    expect((await e().io.read(dst, 0, a.length)).equals(a)).toBe(true);
    expect((await e().io.read(dst, 4 * MiB, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    expect((await e().driver.list(dst)).map((s) => [s.id, s.name])).toEqual([['es-9', 'dst own']]);
    await checkImage(e().image(dst));
    await e().driver.rollback(dst, 'es-9');
    expect((await e().io.read(dst, 0, d0.length)).equals(d0)).toBe(true);
    expect((await e().io.read(dst, 4 * MiB, d1.length)).equals(d1)).toBe(true);
  });

  it('never lets qemu-img probe the format: a raw file at a disk path is refused, untouched', async () => {
    const raw = join(e().root, 'raw.img');
    await writeFile(raw, Buffer.alloc(MiB, 9));
    const d: DiskRef = { path: 'raw.img' };
    const before = await fingerprint(e().root);
    await expectStorageError(e().driver.create(d, 'es-1', { name: 'x' }), 'backend');
    await expectStorageError(e().driver.list(d), 'backend');
    expect(await fingerprint(e().root)).toBe(before);
  });

  it('init removes temporaries left by a crash', async () => {
    await e().driver.createDisk(disk);
    await e().driver.create(disk, 'es-1', { name: 'one' });
    const leftovers = [
      join(e().root, '.esnap', 'vm1', 'disk0', '.names.json.tmp-0123456789ab'),
      join(e().root, '.esnap', 'vm1', '.names.json.tmp-0123456789ab'),
      join(e().root, '.esnap', 'vm1', 'disk0', '..esnap-index.tmp-0123456789ab'),
    ];
    for (const f of leftovers) await writeFile(f, 'x');
    await e().driver.init();
    for (const f of leftovers) await expect(stat(f)).rejects.toThrow();
    expect((await e().driver.list(disk)).map((s) => s.name)).toEqual(['one']);
  });

  it('a disk named in the old layout (.names.json) lists the same before and after init() converts it', async () => {
    await e().driver.createDisk(disk);
    for (const id of ['es-1', 'es-2']) await run(['qemu-img', 'snapshot', '-c', id, e().image(disk)]);
    const dir = join(e().root, '.esnap', 'vm1', 'disk0');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, '.names.json'), JSON.stringify({ names: { 'es-1': 'old one', 'es-2': 'old two', 'es-9': 'gone' } }));
    const names = async (): Promise<string[][]> => (await e().driver.list(disk)).map((s) => [s.id, s.name ?? '-']);
    expect(await names()).toEqual([['es-1', 'old one'], ['es-2', 'old two']]);
    await e().driver.init();
    expect(await readdir(dir)).toEqual(['.esnap-index']);
    expect(await names()).toEqual([['es-1', 'old one'], ['es-2', 'old two']]);
    await e().driver.destroy(disk, ['es-1']);
    await e().driver.create(disk, 'es-3', { name: 'new' });
    await e().driver.init();
    expect(await names()).toEqual([['es-2', 'old two'], ['es-3', 'new']]);
  });

  it('a failed create leaves the index byte for byte as it was', async () => {
    await e().driver.createDisk(disk);
    await e().driver.create(disk, 'es-1', { name: 'one' });
    const index = join(e().root, '.esnap', 'vm1', 'disk0', '.esnap-index');
    const before = await readFile(index, 'utf8');
    // A raw file where the image should be: qemu-img fails after the name was appended.
    const other: DiskRef = { path: 'vm1/raw' };
    await writeFile(join(e().root, 'vm1', 'raw'), Buffer.alloc(MiB));
    await expectStorageError(e().driver.create(other, 'es-2', { name: 'never' }), 'backend');
    await expect(stat(join(e().root, '.esnap', 'vm1', 'raw', '.esnap-index'))).rejects.toThrow();
    expect(await readFile(index, 'utf8')).toBe(before);
  });

  it('refuses disk paths that leave the root through a symlink', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'esnap-outside-'));
    try {
      await writeFile(join(outside, 'victim'), 'precious');
      await symlink(outside, join(e().root, 'evil'));
      await expectStorageError(e().driver.createDisk({ path: 'evil/disk', sizeBytes: MiB }), 'invalid_name');
      await expectStorageError(e().driver.create({ path: 'evil/victim' }, 'es-1', { name: 'x' }), 'invalid_name');
      await e().driver.createDisk({ path: 'ok', sizeBytes: MiB });
      await mkdir(join(e().root, '.esnap'), { recursive: true });
      await symlink(outside, join(e().root, '.esnap', 'ok'));
      await expectStorageError(e().driver.create({ path: 'ok' }, 'es-1', { name: 'x' }), 'invalid_name');
      expect(await readdir(outside)).toEqual(['victim']);
      expect(await readFile(join(outside, 'victim'), 'utf8')).toBe('precious');
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

describe('qcow2 driver on a full storage', async () => {
  const reason = (await qemuUnavailable()) ?? (process.getuid?.() === 0 ? null : 'mounting a tmpfs needs root');
  if (reason !== null) return platformUnavailable('needs qemu-img and root', reason);

  it('fails with no_space, leaving the image consistent and its snapshots as they were', async () => {
    const mnt = await mkdtemp(join(tmpdir(), 'esnap-full-'));
    await run(['mount', '-t', 'tmpfs', '-o', 'size=4M', 'tmpfs', mnt]);
    try {
      const env = await qcow2Env(mnt);
      const src: DiskRef = { path: 'a', sizeBytes: 64 * MiB };
      const dst: DiskRef = { path: 'b', sizeBytes: 64 * MiB };
      await env.driver.createDisk(src);
      await env.driver.createDisk(dst);
      await run(['qemu-io', '-f', 'qcow2', '-c', 'write -q -P 1 0 512k', env.image(src)]);
      await env.driver.create(src, 'es-1', { name: 'one' });
      await run(['qemu-io', '-f', 'qcow2', '-c', 'write -q -P 2 0 256k', env.image(src)]);
      await run(['sh', '-c', `dd if=/dev/zero of=${join(mnt, 'filler')} bs=4k 2>/dev/null; true`]);
      await expectStorageError(env.driver.create(src, 'es-2', { name: 'two' }), 'no_space');
      await expectStorageError(env.driver.restore(src, 'es-1', dst), 'no_space');
      expect((await env.driver.list(src)).map((s) => [s.id, s.name])).toEqual([['es-1', 'one']]);
      await checkImage(env.image(src));
      await checkImage(env.image(dst));
      // Room again: the half-done restore can simply be run again.
      await rm(join(mnt, 'filler'));
      await env.driver.restore(src, 'es-1', dst);
      await run(['qemu-io', '-f', 'qcow2', '-c', 'read -q -P 1 0 512k', env.image(dst)]);
    } finally {
      await run(['umount', mnt]);
      await rm(mnt, { recursive: true, force: true });
    }
  });
});
