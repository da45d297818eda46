/**
 * Issue 15 benchmark of the type 1 transport (needs root, zfs-fuse and openssh-server): the second
 * backup of a 2 GiB zfs disk after 1 % of it changed in 8 contiguous extents, pulled over SSH by
 * esnap (its forced command's `send dataset … <base>` piped into `zfs recv`), beside the bare
 * `ssh … zfs send -i … | zfs recv` of the same snapshots over the same sshd, same key type, in the
 * same run, alternating which goes first. Printed: bytes sent (target ≤ 5 % of the disk) and times
 * (target: esnap within 20 % of bare). esnap's backup records the SHA-256 of the stream it received
 * (hashed on the way: inside its time); the image read of the former design (a whole read of the
 * received image for its SHA-256) is shown beside it. Then a verify of the newest backup: the
 * full `zfs send` of it into the hasher (now) against that image read (before). Then its restore
 * into a zfs disk (target: ≥ 80 % of the bare `zfs send | zfs recv`), locally and over SSH, and
 * the same into a btrfs disk on a loop-backed btrfs (runBtrfs).
 *
 * The disk holds 256 MiB of random data and is sparse beyond (a full 2 GiB of data takes minutes to
 * write on zfs-fuse); an incremental stream carries only the changed blocks either way.
 *
 * Run: npm run build && node dist/bench/backup-send.bench.js
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir, loadavg } from 'node:os';
import { silentLogger } from '../src/runtime.js';
import { NodeCommandRunner } from '../src/storage/node-runner.js';
import { ZfsDriver } from '../src/storage/zfs/zfs.driver.js';
import { AgentSsh } from '../src/transport/agent-ssh.js';
import { parseSshAddress } from '../src/transport/ssh-address.js';
import { sshArgv } from '../src/transport/ssh-client.js';
import { chainSendArgv, imageChecksum, pullDataset } from '../src/transport/dataset-backup.js';
import { spawnHasher } from '../src/backups/image-hash.js';
import { nativeEngine } from '../src/backups/engine.native.js';
import type { BackupAgentIo } from '../src/backups/engine.js';
import { defaultTransferFor } from '../src/backups/transfer.js';
import { SshTransfer } from '../src/transport/ssh-transfer.js';
import { announce } from '../src/transport/announcements.js';
import { makeZfsPool } from '../test/platform/zfs.js';
import { makeLoopFs } from '../test/platform/loopfs.js';
import { BtrfsDriver } from '../src/storage/btrfs/btrfs.driver.js';
import { nativeBaseSnapshot } from '../src/transport/native-streams.js';
import { startSshd } from '../test/platform/sshd.js';

const MiB = 1024 * 1024;
const DISK = 2048 * MiB;
const runner = new NodeCommandRunner();

async function must(argv: string[]): Promise<string> {
  const r = await runner.run(argv, { timeoutMs: 30 * 60_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** `f`'s time in ms, after a `sync` outside it (each measured run starts from the same state). */
async function timed(f: () => Promise<unknown>): Promise<number> {
  await must(['sync']);
  const t = performance.now();
  await f();
  return performance.now() - t;
}

async function scribble(image: string, extents: number, extentBytes: number, round: number): Promise<void> {
  const fh = await open(image, 'r+');
  try {
    for (let i = 0; i < extents; i++) {
      const at = Math.floor(((i + 0.5) * DISK) / extents / MiB) * MiB + round * MiB; // spread over the disk
      await fh.write(randomBytes(extentBytes), 0, extentBytes, at);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-send-'));
  const pool = await makeZfsPool(6144); // room for a restored 2 GiB image beside the chains
  const sshd = await startSshd({ dir: join(dir, 'sshd'), authorizedKeysFile: `${join(dir, 'src-ssh', 'authorized_keys')} ${join(dir, 'bare_keys')}` });
  try {
    for (const ds of ['src', 'esnap', 'bare']) await must(['zfs', 'create', `${pool.name}/${ds}`]);
    const source = { name: 'tank', driver: 'zfs', dataset: `${pool.name}/src` };
    const target = { name: 'backups', driver: 'zfs', dataset: `${pool.name}/esnap` };
    const driver = new ZfsDriver({ dataset: source.dataset, runner });
    await driver.init();
    const disk = 'vm1-disk0';
    await driver.createDisk({ path: disk, sizeBytes: DISK });
    const image = await driver.imagePathOf({ path: disk });
    await scribble(image, 16, 16 * MiB, 0);

    const address = parseSshAddress(`root@127.0.0.1:${sshd.port}`)!;
    const serveScript = join(process.cwd(), 'dist/src/bin/esnap-ssh-serve.js');
    const src = await AgentSsh.start(runner, { dir: join(dir, 'src-ssh'), node: 'source', address, storages: [source], serveScript }, silentLogger);
    const bkp = await AgentSsh.start(runner, { dir: join(dir, 'bkp-ssh'), node: 'backup', address: parseSshAddress('root@127.0.0.1:1')!, storages: [], serveScript }, silentLogger);
    const trust = { backupKeys: [{ node: 'backup', publicKey: bkp.registration.publicKey }], hosts: [{ node: 'source', address: src.registration.address, hostKey: sshd.hostKey }] };
    for (const side of [src, bkp]) await side.control({ kind: 'trust', taskId: '', payload: trust });
    // The bare baseline's key: the same ed25519 key type, no forced command.
    await must(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'bare_key')]);
    await writeFile(join(dir, 'bare_keys'), await readFile(join(dir, 'bare_key.pub'), 'utf8'));
    const bareSsh = (command: string): string[] => {
      const argv = sshArgv(bkp.dir, address, ['snapshot', 'x', 'x', 'is-1']);
      argv.pop();
      argv[argv.indexOf(join(bkp.dir, 'id_ed25519'))] = join(dir, 'bare_key');
      return [...argv, command];
    };
    const snap = (id: string): Promise<string> => must(['zfs', 'snapshot', `${source.dataset}/${disk}@${id}`]);

    // Full first backups on both sides (not measured).
    await snap('is-1');
    const first = await pullDataset(runner, { source: { kind: 'ssh', address, sshDir: bkp.dir, storage: 'tank' }, disk, snapshot: 'is-1', base: null, target, chain: null, newChain: 'c1', checksum: false });
    const bareFull = await runner.pipe!(bareSsh(`zfs send ${source.dataset}/${disk}@is-1`), ['zfs', 'recv', '-F', `${pool.name}/bare/c1`], { timeoutMs: 3600_000 });
    if (bareFull.producer.code !== 0 || bareFull.consumer.code !== 0) throw new Error(`bare full: ${bareFull.producer.stderr} ${bareFull.consumer.stderr}`);
    console.log(`full backup: ${(first.bytes / MiB).toFixed(1)} MiB sent (disk 2048 MiB, 256 MiB of it data)`);

    const extentBytes = Math.round((DISK * 0.01) / 8); // 1 % in 8 contiguous extents
    const rows: Array<{ round: number; bytes: number; esnap: number; esnapSum: number; bare: number }> = [];
    for (let round = 1; round <= 3; round++) {
      const base = `is-${round}`;
      const next = `is-${round + 1}`;
      await scribble(image, 8, extentBytes, round);
      await snap(next);
      const doEsnap = async (): Promise<{ ms: number; bytes: number }> => {
        const t = performance.now();
        const r = await pullDataset(runner, { source: { kind: 'ssh', address, sshDir: bkp.dir, storage: 'tank' }, disk, snapshot: next, base, target, chain: 'c1', newChain: 'unused', checksum: false });
        if (r.full) throw new Error(`not incremental: ${r.detail}`);
        return { ms: performance.now() - t, bytes: r.bytes };
      };
      const doBare = async (): Promise<{ ms: number }> => {
        const t = performance.now();
        const r = await runner.pipe!(bareSsh(`zfs send -i ${source.dataset}/${disk}@${base} ${source.dataset}/${disk}@${next}`), ['zfs', 'recv', '-F', `${pool.name}/bare/c1`], { timeoutMs: 3600_000 });
        if (r.producer.code !== 0 || r.consumer.code !== 0) throw new Error(`bare: ${r.producer.stderr} ${r.consumer.stderr}`);
        return { ms: performance.now() - t };
      };
      const [e, b] = round % 2 === 1 ? [await doEsnap(), await doBare()] : await doBare().then(async (bb) => [await doEsnap(), bb] as const);
      // The checksum read of the newest backup, as a backup records it (a clone of the received snapshot read whole).
      const t = performance.now();
      await imageChecksum(runner, target, 'c1', next);
      rows.push({ round, bytes: e.bytes, esnap: e.ms, esnapSum: e.ms + (performance.now() - t), bare: b.ms });
    }
    // Verify of the newest backup: full send into the hasher (now) vs the image read (before).
    const newest = 'is-4';
    const tv = performance.now();
    const hasher = await spawnHasher(runner);
    const send = runner.spawn!(chainSendArgv(target, 'c1', newest), { stdoutTo: hasher.command.stdin!, stdout: 'capture', timeoutMs: 3600_000 });
    (hasher.command.stdin as unknown as { destroy(): void }).destroy();
    const [sr] = await Promise.all([send.done, hasher.digest]);
    if (sr.code !== 0) throw new Error(sr.stderr);
    const verifyNow = performance.now() - tv;
    const ti = performance.now();
    await imageChecksum(runner, target, 'c1', newest);
    const verifyBefore = performance.now() - ti;
    console.log(`verify of the newest backup: full zfs send into the hasher ${(verifyNow / 1000).toFixed(2)} s; image read from a clone (before) ${(verifyBefore / 1000).toFixed(2)} s`);

    // Restore of the newest backup into a disk of the source storage, on one node (as in embedded mode) and
    // from the backup node over SSH: esnap's native restore (`zfs send <backup>` into the target's
    // `zfs recv`, which replaces the disk's dataset: ZfsDriver.receiveDisk) against bare `zfs send <backup> |
    // zfs recv <new dataset>` (locally, and through `ssh … zfs recv` with the bare key over the same sshd), three
    // rounds each, alternating which goes first; then once the former path (the backup's image read from a
    // clone of its snapshot, written through the zfs driver's restore sink). Everything written before is
    // flushed first (outside the timings).
    const io: BackupAgentIo = {
      node: 'n1', runner, log: silentLogger, transferFor: defaultTransferFor('n1', new Map([['tank', driver]]), () => new SshTransfer(runner, bkp.dir, 'source', address)),
      storageConfigs: new Map([['tank', source], ['backups', target]]), roots: new Map(), keysDir: null,
    };
    const restored = { path: 'vm2-disk0', sizeBytes: DISK };
    await driver.createDisk(restored);
    const TASK = '1e1u1-6f75849b-1a2b-3c4d-5e6f';
    await announce(src.serveConfig.announcedDir, { taskId: TASK, storage: 'tank', disk: restored.path, sizeBytes: DISK, until: new Date(Date.now() + 3600_000).toISOString() });
    const restoreP = (node: string, targetDriver?: string) =>
      ({ op: 'backup_restore', backupId: 1, type: 1, from: { storage: 'backups', resticId: null, filename: `${target.dataset}/c1@${newest}` }, checksum: 'stream:bench', target: { node, storage: 'tank', disk: restored }, taskId: TASK, ...(targetDriver ? { targetDriver } : {}) }) as const;
    const bareRecv = async (over: 'local' | 'ssh', n: number): Promise<void> => {
      const ds = `${pool.name}/bare-restore-${over}-${n}`;
      const consumer = over === 'local' ? ['zfs', 'recv', ds] : bareSsh(`zfs recv ${ds}`);
      const r = await runner.pipe!(chainSendArgv(target, 'c1', newest), consumer, { timeoutMs: 3600_000 });
      if (r.producer.code !== 0 || r.consumer.code !== 0) throw new Error(`bare restore: ${r.producer.stderr} ${r.consumer.stderr}`);
    };
    const restoreRows: Array<{ over: string; esnap: number; bare: number }> = [];
    for (let n = 1; n <= 3; n++) {
      for (const over of ['local', 'ssh'] as const) {
        const esnapOnce = () => timed(() => nativeEngine.restore(restoreP(over === 'local' ? 'n1' : 'source', 'zfs'), io));
        const bareOnce = () => timed(() => bareRecv(over, n));
        const [e, b] = n % 2 === 1 ? [await esnapOnce(), await bareOnce()] : await bareOnce().then(async (bb) => [await esnapOnce(), bb] as const);
        restoreRows.push({ over, esnap: e, bare: b });
      }
    }
    const restoreImage = await timed(() => nativeEngine.restore(restoreP('n1'), io));
    console.log('restore of the newest backup (2048 MiB disk) into a zfs disk, esnap native / bare zfs send | zfs recv:');
    for (const r of restoreRows) {
      console.log(
        `  ${r.over === 'local' ? 'local pipes' : 'over ssh   '}: esnap ${(r.esnap / 1000).toFixed(2)} s; bare ${(r.bare / 1000).toFixed(2)} s; ` +
          `esnap's throughput ${((100 * r.bare) / r.esnap).toFixed(0)} % of bare (target ≥ 80 %)`,
      );
    }
    console.log(`  the former path (image read from a clone, written through the restore sink): ${(restoreImage / 1000).toFixed(2)} s`);
    console.log(`second backup after 1 % changed in 8 extents (load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}):`);
    for (const r of rows) {
      console.log(
        `  round ${r.round}: esnap ${(r.bytes / MiB).toFixed(2)} MiB sent (${((100 * r.bytes) / DISK).toFixed(2)} % of the disk; target ≤ 5 %), ` +
          `${(r.esnap / 1000).toFixed(2)} s (the former image read would make it ${(r.esnapSum / 1000).toFixed(2)} s); ` +
          `bare zfs send -i | ssh | zfs recv ${(r.bare / 1000).toFixed(2)} s; esnap/bare ${(r.esnap / r.bare).toFixed(2)} (target ≤ 1.20)`,
      );
    }
  } finally {
    await sshd.stop();
    await pool.cleanup();
  }
}

/**
 * The restore of a dataset backup into a btrfs disk, on one node: esnap's native restore (`btrfs
 * send` of the backup into `btrfs receive` in the target's staging folder, the received subvolume
 * swapped in: BtrfsDriver.receiveDisk) against bare `btrfs send <backup> | btrfs receive <folder>`,
 * three rounds alternating which goes first; then once the former path (the image read from the
 * backup's subvolume, written through the btrfs restore sink). Same disk as above: 2 GiB, 256 MiB of data.
 */
export async function runBtrfs(): Promise<void> {
  const fs = await makeLoopFs('btrfs', 6144);
  try {
    const source = { name: 'tank', driver: 'btrfs', root: join(fs.mountpoint, 'src') };
    const target = { name: 'backups', driver: 'btrfs', root: join(fs.mountpoint, 'bkp') };
    const driver = new BtrfsDriver({ root: source.root, runner });
    await driver.init();
    const disk = { path: 'vm1-disk0', sizeBytes: DISK };
    await driver.createDisk(disk);
    await scribble(join(source.root, disk.path, 'disk.img'), 16, 16 * MiB, 0);
    await nativeBaseSnapshot(runner, source, disk.path, 'is-1', 'snapshot');
    await pullDataset(runner, { source: { kind: 'local', storage: source }, disk: disk.path, snapshot: 'is-1', base: null, target, chain: null, newChain: 'c1', checksum: false });
    const restored = { path: 'vm2-disk0', sizeBytes: DISK };
    await driver.createDisk(restored);
    const io: BackupAgentIo = {
      node: 'n1', runner, log: silentLogger, transferFor: defaultTransferFor('n1', new Map([['tank', driver]])),
      storageConfigs: new Map([['tank', source], ['backups', target]]), roots: new Map(), keysDir: null,
    };
    const restoreP = (targetDriver?: string) =>
      ({ op: 'backup_restore', backupId: 1, type: 1, from: { storage: 'backups', resticId: null, filename: join(target.root, 'c1', 'is-1') }, checksum: 'stream:bench', target: { node: 'n1', storage: 'tank', disk: restored }, taskId: 'bench', ...(targetDriver ? { targetDriver } : {}) }) as const;
    const bare = async (n: number): Promise<void> => {
      const into = join(fs.mountpoint, `bare-${n}`);
      await mkdir(into);
      const r = await runner.pipe!(chainSendArgv(target, 'c1', 'is-1'), ['btrfs', 'receive', into], { timeoutMs: 3600_000 });
      if (r.producer.code !== 0 || r.consumer.code !== 0) throw new Error(`bare btrfs restore: ${r.producer.stderr} ${r.consumer.stderr}`);
    };
    console.log(`restore of a backup (2048 MiB disk) into a btrfs disk, esnap native / bare btrfs send | btrfs receive (load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}):`);
    for (let n = 1; n <= 3; n++) {
      const esnapOnce = () => timed(() => nativeEngine.restore(restoreP('btrfs'), io));
      // esnap's swap ends with a btrfs commit (the renames and the data durable, as a restore that
      // says it is done must be); bare receive leaves both in memory: its durable time adds the same commit.
      const bareSynced = async (): Promise<{ bare: number; synced: number }> => {
        const t = performance.now();
        const bareMs = await timed(() => bare(n));
        await must(['btrfs', 'filesystem', 'sync', fs.mountpoint]);
        return { bare: bareMs, synced: performance.now() - t };
      };
      const [e, b] = n % 2 === 1 ? [await esnapOnce(), await bareSynced()] : await bareSynced().then(async (bb) => [await esnapOnce(), bb] as const);
      console.log(
        `  round ${n}: esnap ${(e / 1000).toFixed(2)} s; bare ${(b.bare / 1000).toFixed(2)} s (${((100 * b.bare) / e).toFixed(0)} %), ` +
          `bare + btrfs filesystem sync ${(b.synced / 1000).toFixed(2)} s (${((100 * b.synced) / e).toFixed(0)} %; target ≥ 80 %)`,
      );
    }
    const former = await timed(() => nativeEngine.restore(restoreP(), io));
    console.log(`  the former path (image read from the backup's subvolume, written through the restore sink): ${(former / 1000).toFixed(2)} s`);
  } finally {
    await fs.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().then(() => runBtrfs()).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
