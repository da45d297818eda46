/**
 * A backup definition's `compression` and `bwlimit` reach the engines (issue 15): restic gets
 * `--compression off|auto|max` (repository version 2) and `--limit-upload`/`--limit-download` in
 * KiB/s for a bwlimit in bytes per second; a dataset (type 1) stream is throttled in the process
 * that counts it. Shown by the argv restic was given and by what a compressible image costs the
 * repository with compression off and max; the throttle by its schedule on a fake clock (no
 * timing asserts).
 */
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { CommandRunner, RunOptions, SpawnOptions } from '../../src/storage/runner.js';
import { FileDriver } from '../../src/storage/file/file.driver.js';
import { compressionArgs, limitArgs, Restic } from '../../src/backups/restic.js';
import { resticEngine } from '../../src/backups/engine.restic.js';
import { defaultTransferFor } from '../../src/backups/transfer.js';
import type { BackupAgentIo } from '../../src/backups/engine.js';
import { Throttle } from '../../src/transport/dataset-backup.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';

const MiB = 1024 * 1024;

describe('compression and bwlimit: argument mapping', () => {
  it("maps Danube's compression choices to restic's", () => {
    expect(compressionArgs(0)).toEqual(['--compression', 'off']);
    expect(compressionArgs(1)).toEqual(['--compression', 'auto']);
    expect(compressionArgs(2)).toEqual(['--compression', 'auto']);
    expect(compressionArgs(3)).toEqual(['--compression', 'max']);
    expect(compressionArgs(null)).toEqual([]);
  });

  it('maps a bwlimit in bytes per second to KiB/s both ways, none when unset', () => {
    expect(limitArgs(10 * MiB)).toEqual(['--limit-upload', '10240', '--limit-download', '10240']);
    expect(limitArgs(100)).toEqual(['--limit-upload', '1', '--limit-download', '1']);
    expect(limitArgs(null)).toEqual([]);
    expect(limitArgs(0)).toEqual([]);
  });

  it('the dataset stream throttle holds chunks so that the bytes keep to the limit', () => {
    let now = 1000;
    const t = new Throttle(1000, () => now);
    expect(t.delayFor(1000)).toBe(0); // one second's worth as a burst
    expect(t.delayFor(500)).toBe(500); // 1500 bytes are due at 0.5 s after the start
    now += 500;
    expect(t.delayFor(500)).toBe(500); // 2000 bytes at 1 s; it is 0.5 s
    now += 5000; // idle: what is due has passed
    expect(t.delayFor(100)).toBe(0);
  });
});

/** A runner that remembers every argv it ran or spawned. */
function recording(inner: CommandRunner): CommandRunner & { argvs: string[][] } {
  const argvs: string[][] = [];
  return {
    argvs,
    run: (argv: readonly string[], o?: RunOptions) => {
      argvs.push([...argv]);
      return inner.run(argv, o);
    },
    spawn: (argv: readonly string[], o?: SpawnOptions) => {
      argvs.push([...argv]);
      return inner.spawn!(argv, o);
    },
  };
}

describe('compression and bwlimit with restic', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('compression and bwlimit need restic', reason);

  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-bkopts-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a definition with compression max and a bwlimit: restic is given both, and the repository stores less than with compression off', async () => {
    const runner = recording(new NodeCommandRunner());
    const log = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as unknown as BackupAgentIo['log'];
    const drivers = new Map([
      ['default', new FileDriver({ root: join(dir, 'storage'), runner })],
      ['off', new FileDriver({ root: join(dir, 'off'), runner })],
      ['max', new FileDriver({ root: join(dir, 'max'), runner })],
    ]);
    for (const d of drivers.values()) await d.init();
    const io: BackupAgentIo = {
      node: 'n1',
      runner,
      log,
      transferFor: defaultTransferFor('n1', drivers),
      roots: new Map([
        ['off', join(dir, 'off')],
        ['max', join(dir, 'max')],
      ]),
      keysDir: join(dir, 'keys'),
    };
    const disk = { path: 'vm/disk0', sizeBytes: 8 * MiB };
    await drivers.get('default')!.createDisk(disk);
    // Compressible and not deduplicated away: text lines that all differ.
    const lines: string[] = [];
    for (let i = 0, n = 0; n < 8 * MiB; i++) {
      const line = `line ${i} of a compressible disk image ${'x'.repeat(i % 50)}\n`;
      lines.push(line);
      n += line.length;
    }
    await writeFile(join(dir, 'storage', disk.path), Buffer.from(lines.join('')).subarray(0, 8 * MiB));

    const create = (id: number, storage: string, compression: number, bwlimit: number | null) =>
      resticEngine.create(
        { op: 'backup_create', backupId: id, type: 2, source: { node: 'n1', storage: 'default', disk }, snapshot: `is-${id}`, storage, filename: 'disk.raw', tags: ['t'], compression, bwlimit },
        io,
      );
    const off = await create(1, 'off', 0, null);
    const max = await create(2, 'max', 3, 64 * MiB);
    expect(off.checksum).toBe(max.checksum);

    const backups = runner.argvs.filter((a) => a[0] === 'restic' && a[1] === 'backup');
    expect(backups).toHaveLength(2);
    expect(backups[0]).toEqual(expect.arrayContaining(['--compression', 'off']));
    expect(backups[0]).not.toContain('--limit-upload');
    expect(backups[1]).toEqual(expect.arrayContaining(['--compression', 'max', '--limit-upload', '65536']));
    // What each repository holds on disk (restic 0.14's data_added counts bytes before compression).
    const packed = async (storage: string): Promise<number> => {
      let total = 0;
      for (const e of await readdir(join(dir, storage, '.esnap-restic', 'data'), { recursive: true, withFileTypes: true })) {
        if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
      }
      return total;
    };
    expect(await packed('off')).toBeGreaterThan(7 * MiB);
    expect(await packed('max')).toBeLessThan((await packed('off')) / 3);

    // The restic repository is version 2 (compression needs it).
    const restic = new Restic({ runner, storageRoot: join(dir, 'max'), storageName: 'max', keysDir: join(dir, 'keys') });
    const cfg = await runner.run(['restic', 'cat', 'config'], { env: { RESTIC_REPOSITORY: restic.repo, RESTIC_PASSWORD_FILE: join(dir, 'keys', 'max.restic-password') } });
    expect(JSON.parse(cfg.stdout).version).toBe(2);
  }, 120_000);
});
