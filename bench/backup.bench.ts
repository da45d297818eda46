/**
 * Type 2 (restic) backup benchmark, embedded (local pipes): esnap's backup engine beside the bare
 * restic commands on the same data, in the same run, each into a repository of its own.
 *
 * - a disk of ESNAP_BENCH_BACKUP_MIB (default 2048) MiB of random bytes is backed up once by each;
 * - 1 % of it changes in 8 contiguous extents;
 * - second backup: esnap (snapshot `is-<n>`, its file as restic's stdin, hashed beside it,
 *   snapshot destroyed) vs bare `cat <snapshot file> | restic backup --stdin` (a direct pipe, as a
 *   shell makes it): time and the bytes restic added to the repository (what a backup sends), as
 *   a share of the disk;
 * - restore: esnap (restic dump into the disk's file aside, SHA-256 of it compared, switched in)
 *   vs bare `restic dump … > file`: throughput, in ESNAP_BENCH_RESTORE_ROUNDS (default 3) pairs,
 *   alternating which of the two runs first, and the median of esnap's share of bare.
 *
 * Run: npm run build && node dist/bench/backup.bench.js   (needs restic; say the load average)
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FileDriver } from '../src/storage/file/file.driver.js';
import { NodeCommandRunner } from '../src/storage/node-runner.js';
import { defaultTransferFor } from '../src/backups/transfer.js';
import { resticEngine } from '../src/backups/engine.restic.js';
import type { BackupAgentIo } from '../src/backups/engine.js';
import { Restic } from '../src/backups/restic.js';

const MiB = 1024 * 1024;
const SIZE_MIB = Number(process.env['ESNAP_BENCH_BACKUP_MIB'] ?? 2048);
/** Restore pairs (esnap and bare), alternating which runs first; the median share is reported. */
const RESTORE_ROUNDS = Math.max(1, Number(process.env['ESNAP_BENCH_RESTORE_ROUNDS'] ?? 3));
const runner = new NodeCommandRunner();
const log = { info: () => undefined, warn: () => undefined, error: console.error, debug: () => undefined } as unknown as BackupAgentIo['log'];

async function fill(path: string, size: number): Promise<void> {
  const fh = await open(path, 'r+');
  const chunk = randomBytes(64 * MiB);
  for (let off = 0; off < size; off += chunk.length) {
    chunk[0] = off & 0xff; // no two chunks alike: restic must store every one
    chunk[1] = (off >> 8) & 0xff;
    chunk[2] = (off >> 16) & 0xff;
    await fh.write(chunk, 0, Math.min(chunk.length, size - off), off);
  }
  await fh.close();
}

/** 1 % of the disk in 8 contiguous extents, spread over it. */
async function change(path: string, size: number): Promise<void> {
  const extent = Math.floor((size * 0.01) / 8);
  const fh = await open(path, 'r+');
  for (let i = 0; i < 8; i++) await fh.write(randomBytes(extent), 0, extent, Math.floor((i * size) / 8) + 4096);
  await fh.close();
}

function resticEnv(repo: string, pw: string): Record<string, string> {
  return { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD_FILE: pw, LC_ALL: 'C' };
}

/**
 * Bare: `cat <file> | restic backup --stdin` as a shell runs it (cat's stdout is restic's stdin,
 * nothing in between); returns ms and bytes added.
 */
async function bareBackup(file: string, repo: string, pw: string): Promise<{ ms: number; added: number; id: string }> {
  const t = performance.now();
  const restic = runner.spawn!(['restic', 'backup', '--json', '--quiet', '--stdin', '--stdin-filename', 'disk.raw'], { stdin: 'pipe', stdout: 'capture', env: resticEnv(repo, pw), timeoutMs: 3600_000 });
  const cat = runner.spawn!(['cat', file], { stdoutTo: restic.stdin!, stdout: 'capture', timeoutMs: 3600_000 });
  (restic.stdin as unknown as { destroy(): void }).destroy();
  const [r, c] = await Promise.all([restic.done, cat.done]);
  const ms = performance.now() - t;
  if (r.code !== 0 || c.code !== 0) throw new Error(r.stderr + c.stderr);
  const s = JSON.parse(r.stdout.trim().split('\n').pop()!) as { data_added: number; snapshot_id: string };
  return { ms, added: s.data_added, id: s.snapshot_id };
}

/** Bare: `restic dump … > file` (restic's stdout is the file). */
async function bareDump(repo: string, pw: string, id: string, out: string): Promise<number> {
  const t = performance.now();
  const fh = await open(out, 'wx');
  const c = runner.spawn!(['restic', 'dump', '--quiet', id, '/disk.raw'], { stdoutTo: fh.fd, stdout: 'capture', env: resticEnv(repo, pw), timeoutMs: 3600_000 });
  await fh.close();
  const r = await c.done;
  if (r.code !== 0) throw new Error(r.stderr);
  return performance.now() - t;
}

async function main(): Promise<void> {
  const size = SIZE_MIB * MiB;
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bkbench-'));
  try {
    const storage = join(dir, 'storage');
    const drivers = new Map([
      ['default', new FileDriver({ root: storage, runner })],
      ['backup', new FileDriver({ root: join(dir, 'backup'), runner })],
    ]);
    for (const d of drivers.values()) await d.init();
    const io: BackupAgentIo = { node: 'n1', runner, log, transferFor: defaultTransferFor('n1', drivers), roots: new Map([['backup', join(dir, 'backup')]]), keysDir: join(dir, 'keys') };
    const disk = { path: 'vm/disk0', sizeBytes: size };
    const target = { path: 'vm2/disk0', sizeBytes: size };
    const src = drivers.get('default')!;
    await src.createDisk(disk);
    await src.createDisk(target);
    await fill(join(storage, disk.path), size);
    // Bare repository, same password scheme.
    const bareRepo = join(dir, 'bare-repo');
    const bareRestic = new Restic({ runner, storageRoot: join(dir, 'bare'), storageName: 'bare', keysDir: join(dir, 'keys') });
    await bareRestic.ensure();
    const pw = join(dir, 'keys', 'bare.restic-password');
    const bareRepoPath = bareRestic.repo;
    void bareRepo;

    let n = 0;
    const esnapBackup = async (): Promise<{ ms: number; added: number; resticId: string; checksum: string }> => {
      n++;
      const t = performance.now();
      const r = await resticEngine.create(
        { op: 'backup_create', backupId: n, type: 2, source: { node: 'n1', storage: 'default', disk }, snapshot: `is-${n}`, storage: 'backup', filename: 'disk.raw', tags: ['bench'] },
        io,
      );
      return { ms: performance.now() - t, added: r.added ?? 0, resticId: r.resticId!, checksum: r.checksum };
    };
    const bareRound = async (): Promise<{ ms: number; snapMs: number; added: number; id: string }> => {
      // The bare path reads a snapshot too; its making is timed apart (esnap's is inside esnap's time).
      const t = performance.now();
      await src.create(disk, 'es-900', { name: 'bare' });
      const snapMs = performance.now() - t;
      try {
        return { ...(await bareBackup(join(storage, '.snapshots', disk.path, 'es-900'), bareRepoPath, pw)), snapMs };
      } finally {
        await src.destroy(disk, ['es-900']);
      }
    };

    const e1 = await esnapBackup();
    const b1 = await bareRound();
    await change(join(storage, disk.path), size);
    const e2 = await esnapBackup();
    const b2 = await bareRound();

    // Restore pairs (esnap's, then the bare dump of the same round, or the other way round every
    // second round): on a shared machine one pair says little, the median of the rounds more.
    const rounds: Array<{ esnapFirst: boolean; esnap: number; bare: number; bareSync: number }> = [];
    const esnapRestore = async (): Promise<number> => {
      execFileSync('sync');
      const tr = performance.now();
      await resticEngine.restore({ op: 'backup_restore', backupId: 2, type: 2, from: { storage: 'backup', resticId: e2.resticId, filename: 'disk.raw' }, checksum: e2.checksum, target: { node: 'n1', storage: 'default', disk: target }, taskId: 't' }, io);
      return performance.now() - tr;
    };
    const bareRestore = async (): Promise<{ ms: number; syncMs: number }> => {
      const out = join(dir, 'bare-restore.raw');
      await rm(out, { force: true });
      const ms = await bareDump(bareRepoPath, pw, b2.id, out);
      // esnap's restore flushes the file aside before it switches it in (crash safety): the bare one's flush, apart.
      const ts = performance.now();
      const bfh = await open(out, 'r');
      await bfh.sync();
      await bfh.close();
      const syncMs = performance.now() - ts;
      // Not left in the page cache for the next run to evict (esnap's restore drops its old file
      // in its own switch), and everything written so far on the disk before the next run starts.
      await rm(out, { force: true });
      execFileSync('sync');
      return { ms, syncMs };
    };
    for (let i = 0; i < RESTORE_ROUNDS; i++) {
      const esnapFirst = i % 2 === 0;
      let esnap = 0;
      if (esnapFirst) esnap = await esnapRestore();
      const b = await bareRestore();
      if (!esnapFirst) esnap = await esnapRestore();
      rounds.push({ esnapFirst, esnap, bare: b.ms, bareSync: b.syncMs });
    }

    const same = execFileSync('cmp', [join(storage, disk.path), join(storage, target.path)]).length === 0;
    const pct = (a: number, b: number): string => `${((a / b - 1) * 100).toFixed(1)} %`;
    const mibs = (ms: number): string => `${(SIZE_MIB / (ms / 1000)).toFixed(0)} MiB/s`;
    console.log(`backup bench: ${SIZE_MIB} MiB disk, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} (2 cores shared)`);
    console.log(`first backup        esnap ${(e1.ms / 1000).toFixed(1)} s   bare snapshot + restic ${((b1.snapMs + b1.ms) / 1000).toFixed(1)} s   (${pct(e1.ms, b1.snapMs + b1.ms)})`);
    console.log(`second backup (1 %) esnap ${(e2.ms / 1000).toFixed(1)} s   bare snapshot + restic ${((b2.snapMs + b2.ms) / 1000).toFixed(1)} s   (${pct(e2.ms, b2.snapMs + b2.ms)})   bare restic alone ${(b2.ms / 1000).toFixed(1)} s`);
    console.log(`  bytes added       esnap ${(e2.added / MiB).toFixed(1)} MiB (${((100 * e2.added) / size).toFixed(2)} % of the disk)   bare ${(b2.added / MiB).toFixed(1)} MiB (${((100 * b2.added) / size).toFixed(2)} %)`);
    const share = (r: { esnap: number; bare: number }): number => (100 * r.bare) / r.esnap;
    for (const [i, r] of rounds.entries()) {
      console.log(
        `restore ${i + 1} (${r.esnapFirst ? 'esnap first' : 'bare first'})  esnap ${mibs(r.esnap)}   bare restic dump ${mibs(r.bare)}   (esnap ${share(r).toFixed(0)} % of bare)   bare dump + fsync ${mibs(r.bare + r.bareSync)} (esnap ${((100 * (r.bare + r.bareSync)) / r.esnap).toFixed(0)} %)`,
      );
    }
    const shares = rounds.map(share).sort((x, y) => x - y);
    console.log(`restore median      esnap ${shares[Math.floor(shares.length / 2)]!.toFixed(0)} % of bare restic dump (rounds: ${rounds.map((r) => share(r).toFixed(0)).join(', ')})`);
    console.log(`restored bytes identical: ${same}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
