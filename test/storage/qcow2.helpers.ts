/**
 * Shared by the qcow2 driver tests: guest-visible I/O on a qcow2 image through qemu-io, a
 * fingerprint of a storage, and a runner that records (and can hide programs from) the driver.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { DiskRef } from '../../src/storage/driver.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { Qcow2Driver } from '../../src/storage/qcow2/qcow2.driver.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/storage/runner.js';
import type { ContractTarget, DiskIO } from './driver-contract.js';

export const MiB = 1024 * 1024;
export const runner = new NodeCommandRunner();

export async function run(argv: string[]): Promise<RunResult> {
  const r = await runner.run(argv, { env: { LC_ALL: 'C' } });
  expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

/** Records every command; `hide` makes programs look absent (spawn ENOENT), as on a node without them. */
export class RecordingRunner implements CommandRunner {
  readonly calls: string[][] = [];
  constructor(private readonly hide: readonly string[] = []) {}
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    if (this.hide.includes(argv[0] ?? '')) {
      const cause = Object.assign(new Error(`spawn ${argv[0]} ENOENT`), { code: 'ENOENT' });
      return Promise.reject(new Error(`Cannot run ${argv[0]}: ${cause.message}`, { cause }));
    }
    return runner.run(argv, options);
  }
  /** `qemu-img snapshot -c` etc. as "-c", "-d", "-a"; other programs by name (past a `setpriv … --`). */
  ops(): string[] {
    return this.calls.map(program).map((c) => (c[0] === 'qemu-img' ? `${c[1]}${c[1] === 'snapshot' ? ` ${c[2]}` : ''}` : (c[0] ?? '')));
  }
}

/** A command's argv past a `setpriv … --` prefix (the driver runs qemu-storage-daemon so). */
export function program(argv: readonly string[]): readonly string[] {
  return argv[0] === 'setpriv' ? argv.slice(argv.indexOf('--') + 1) : argv;
}

/** Guest-visible bytes of `<root>/<disk.path>`, through qemu-io (never past the disk's end). */
export function qcow2IO(root: string, opts: { shared?: boolean } = {}): DiskIO {
  const imageOf = (disk: DiskRef): string => join(root, disk.path);
  return {
    async write(disk, offset, data) {
      const size = disk.sizeBytes ?? Infinity;
      if (offset + data.length > size) throw new RangeError(`write of ${data.length} at ${offset} past the end (${size})`);
      const dir = await mkdtemp(join(tmpdir(), 'esnap-io-'));
      try {
        const src = join(dir, 'data');
        await writeFile(src, data);
        await run(['qemu-io', '-f', 'qcow2', '-c', `write -q -s ${src} ${offset} ${data.length}`, imageOf(disk)]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    async read(disk, offset, length) {
      const shared = opts.shared ? ['-U', '-r'] : [];
      const r = await run(['qemu-io', ...shared, '-f', 'qcow2', '-c', `read -v ${offset} ${length}`, imageOf(disk)]);
      return parseHexDump(r.stdout, length);
    },
  };
}

/** `read -v` prints `<offset>:  xx xx … (16 bytes)  <ascii>` per line. */
function parseHexDump(text: string, length: number): Buffer {
  const bytes: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^[0-9a-f]+:\s+((?:[0-9a-f]{2} ){1,16})/.exec(line);
    if (m?.[1]) for (const h of m[1].trim().split(' ')) bytes.push(parseInt(h, 16));
  }
  expect(bytes.length, 'qemu-io dumped every byte').toBe(length);
  return Buffer.from(bytes);
}

/** Every file under root with its content: a refused call must leave all of them as they were. */
export async function fingerprint(root: string): Promise<string> {
  const lines: string[] = [];
  for (const entry of await readdir(root, { recursive: true })) {
    const path = join(root, entry);
    const st = await stat(path).catch(() => null);
    if (st?.isDirectory()) lines.push(`${entry}/`);
    // Images by inode and content; side-cars by content only (a refused create may write a name
    // and take it back, which replaces the file with an identical one).
    else if (st) lines.push(`${entry} ${entry.startsWith('.esnap') ? '' : st.ino} ${createHash('sha256').update(await readFile(path)).digest('hex')}`);
  }
  return lines.sort().join('\n');
}

export interface Qcow2Env {
  readonly root: string;
  readonly driver: Qcow2Driver;
  readonly runner: RecordingRunner;
  readonly io: DiskIO;
  image(disk: DiskRef): string;
  cleanup(): Promise<void>;
}

export async function qcow2Env(parent = tmpdir(), hide: readonly string[] = []): Promise<Qcow2Env> {
  const root = await mkdtemp(join(parent, 'esnap-qcow2-'));
  const rec = new RecordingRunner(hide);
  const driver = new Qcow2Driver({ root, runner: rec, qmpTimeoutMs: 2000 });
  await driver.init();
  return {
    root,
    driver,
    runner: rec,
    io: qcow2IO(root),
    image: (d) => join(root, d.path),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

export async function qcow2Target(hide: readonly string[] = []): Promise<ContractTarget> {
  const env = await qcow2Env(tmpdir(), hide);
  return { driver: env.driver, io: env.io, sizesKnown: false, fingerprint: () => fingerprint(env.root), cleanup: env.cleanup };
}

/** Tags of the image as qemu-img sees them (not through the driver). */
export async function tags(image: string): Promise<string[]> {
  const r = await run(['qemu-img', 'info', '--output=json', '-U', '-f', 'qcow2', image]);
  const info = JSON.parse(r.stdout) as { snapshots?: Array<{ name: string }> };
  return (info.snapshots ?? []).map((s) => s.name);
}

export async function checkImage(image: string): Promise<void> {
  await run(['qemu-img', 'check', '-f', 'qcow2', image]);
}

export function pattern(seed: number, length = 4096): Buffer {
  const b = randomBytes(length);
  b.writeUInt32LE(seed, 0);
  return b;
}
