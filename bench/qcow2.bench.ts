/**
 * qcow2 driver benchmark: per operation, the driver beside the bare commands it runs (the same
 * argument arrays, spawned through the same NodeCommandRunner, in the same run), on images in a
 * temp dir. Driver and bare runs alternate on twin images so both see the same snapshot counts.
 *
 * - create one snapshot (offline): driver.create vs the one qemu-storage-daemon run it spawns (QEMU
 *   checks the tag is new and creates it), vs `snapshot -c` alone (which would accept a duplicate
 *   tag), and vs `info -U` + `snapshot -c` (the driver's path where qemu-storage-daemon is missing);
 * - create one snapshot (live, QMP to a paused QEMU): driver.create vs connect + query-block +
 *   blockdev-snapshot-internal-sync on a bare QmpClient;
 * - list 1,000 snapshots: driver.list vs `info -U --output=json` + JSON.parse;
 * - destroy 100 of 1,000 snapshots: driver.destroy (one qemu-storage-daemon) vs the same daemon
 *   argv and input, vs 100 single `snapshot -d` (bare, and through a driver without the daemon).
 *
 * Run: npx tsc -p tsconfig.json && node dist/bench/qcow2.bench.js
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from '../src/guest/qmp.js';
import type { DiskRef } from '../src/storage/driver.js';
import { NodeCommandRunner } from '../src/storage/node-runner.js';
import { Qcow2Driver } from '../src/storage/qcow2/qcow2.driver.js';
import { argv, batchInput } from '../src/storage/qcow2/qcow2.image.js';
import type { CommandRunner, RunOptions, RunResult } from '../src/storage/runner.js';
import { rotated, timed } from './driver-timing.js';

const runner = new NodeCommandRunner();
const ENV = { LC_ALL: 'C' };
const MiB = 1024 * 1024;

async function sh(args: readonly string[], input?: string): Promise<RunResult> {
  const r = await runner.run(args, { env: ENV, timeoutMs: 30 * 60_000, ...(input === undefined ? {} : { input }) });
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  return r;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const rows: Array<[string, string, number, number]> = [];
function report(op: string, what: string, driverMs: number, bareMs: number): void {
  rows.push([op, what, driverMs, bareMs]);
  const pct = ((driverMs / bareMs - 1) * 100).toFixed(1);
  console.log(`${op.padEnd(34)} driver ${driverMs.toFixed(1).padStart(8)} ms   ${what.padEnd(40)} ${bareMs.toFixed(1).padStart(8)} ms   ${pct.padStart(6)} %`);
}

/** A runner that says qemu-storage-daemon does not exist, for the one-by-one destroy path. */
const noDaemon: CommandRunner = {
  run(args: readonly string[], options?: RunOptions): Promise<RunResult> {
    if (args[0] === 'qemu-storage-daemon') return Promise.reject(new Error('hidden'));
    return runner.run(args, options);
  },
};

/** 1,000 snapshots in one qemu-storage-daemon run (qemu-img would take a process per snapshot). */
async function fill(image: string, n: number, prefix = 'es-'): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
  await sh(argv.storageDaemon(image, 'b'), batchInput(ids.map((name) => ({ execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'b', name } }))));
  return ids;
}

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-qcow2-'));
  try {
    const driver = new Qcow2Driver({ root: dir, runner });
    await driver.init();
    const qemuImg = (await sh(['qemu-img', '--version'])).stdout.split('\n')[0];
    console.log(`qcow2 benchmark, ${qemuImg}, images under ${dir}`);
    console.log(`${'operation'.padEnd(34)} ${'driver'.padEnd(19)} ${'baseline (bare commands)'.padEnd(51)} driver vs bare`);

    // create: 30 alternating creates on twin disks with 64 MiB of data.
    const a: DiskRef = { path: 'create-a', sizeBytes: 256 * MiB };
    const b: DiskRef = { path: 'create-b', sizeBytes: 256 * MiB };
    const c: DiskRef = { path: 'create-c', sizeBytes: 256 * MiB };
    const d4: DiskRef = { path: 'create-d', sizeBytes: 256 * MiB };
    for (const d of [a, b, c, d4]) {
      await driver.createDisk(d);
      await sh(['qemu-io', '-f', 'qcow2', '-c', 'write -q -P 7 0 64M', join(dir, d.path)]);
    }
    const tDriver: number[] = [];
    const tBare: number[] = [];
    const tBareC: number[] = [];
    const tBareD: number[] = [];
    // The four sides take turns going first (rotated).
    for (let i = 1; i <= 32; i++) {
      await rotated(i, [
        async () => tDriver.push(await timed(() => driver.create(a, `es-${i}`, { name: `n${i}` }))),
        async () =>
          tBare.push(
            await timed(() =>
              sh(argv.storageDaemon(join(dir, b.path), 'esnap'), batchInput([{ execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'esnap', name: `es-${i}` } }])),
            ),
          ),
        async () => tBareC.push(await timed(() => sh(argv.snapshotCreate(join(dir, c.path), `es-${i}`)))),
        async () =>
          tBareD.push(
            await timed(async () => {
              JSON.parse((await sh(argv.info(join(dir, d4.path)))).stdout);
              await sh(argv.snapshotCreate(join(dir, d4.path), `es-${i}`));
            }),
          ),
      ]);
    }
    report('create one snapshot (median of 32)', 'the same qemu-storage-daemon run', median(tDriver), median(tBare));
    report('', 'snapshot -c alone (no tag check)', median(tDriver), median(tBareC));
    report('', 'info -U + snapshot -c (old path)', median(tDriver), median(tBareD));

    await liveCreate(dir, driver);

    // list 1,000.
    const big: DiskRef = { path: 'list', sizeBytes: 256 * MiB };
    await driver.createDisk(big);
    const t0 = performance.now();
    const ids = await fill(join(dir, big.path), 1000);
    console.log(`  (made 1,000 snapshots in one qemu-storage-daemon run: ${(performance.now() - t0).toFixed(0)} ms; image ${((await stat(join(dir, big.path))).size / MiB).toFixed(1)} MiB)`);
    const lDriver: number[] = [];
    const lBare: number[] = [];
    for (let i = 0; i < 15; i++) {
      lDriver.push(await timed(async () => {
        if ((await driver.list(big)).length !== 1000) throw new Error('list lost snapshots');
      }));
      lBare.push(await timed(async () => JSON.parse((await sh(argv.info(join(dir, big.path)))).stdout)));
    }
    report('list 1,000 snapshots (median of 15)', 'info -U --output=json + JSON.parse', median(lDriver), median(lBare));

    // destroy 100 of 1,000: each variant on its own copy of the 1,000-snapshot image.
    const doomed = ids.filter((_, i) => i % 10 === 0);
    const copies = ['d-driver', 'd-bare-batch', 'd-bare-single', 'd-driver-single'];
    for (const name of copies) await copyFile(join(dir, big.path), join(dir, name));
    const dDriver = await timed(() => driver.destroy({ path: 'd-driver' }, doomed));
    const dBareBatch = await timed(async () => {
      JSON.parse((await sh(argv.info(join(dir, 'd-bare-batch')))).stdout);
      await sh(argv.storageDaemon(join(dir, 'd-bare-batch'), 'esnap'), batchInput(doomed.map((name) => ({ execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: 'esnap', name } }))));
    });
    const dBareSingle = await timed(async () => {
      for (const id of doomed) await sh(argv.snapshotDelete(join(dir, 'd-bare-single'), id));
    });
    const single = new Qcow2Driver({ root: dir, runner: noDaemon });
    await single.init();
    const dDriverSingle = await timed(() => single.destroy({ path: 'd-driver-single' }, doomed));
    report('destroy 100 of 1,000 (batched)', 'info -U + the same daemon run', dDriver, dBareBatch);
    report('', '100 × snapshot -d (bare)', dDriver, dBareSingle);
    report('destroy 100 of 1,000 (no daemon)', '100 × snapshot -d (bare)', dDriverSingle, dBareSingle);
    for (const name of copies) {
      const left = (await driver.list({ path: name })).length;
      if (left !== 900) throw new Error(`${name}: ${left} snapshots left, expected 900`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Live create against a paused QEMU holding the image (child process, ended by pid). */
async function liveCreate(dir: string, driver: Qcow2Driver): Promise<void> {
  const disks: DiskRef[] = [{ path: 'live-a', sizeBytes: 256 * MiB }, { path: 'live-b', sizeBytes: 256 * MiB }];
  for (const d of disks) await driver.createDisk(d);
  const sock = join(dir, 'qmp.sock');
  const qemu = spawn('qemu-system-x86_64', [
    '-S', '-nodefaults', '-display', 'none', '-machine', 'q35', '-accel', 'tcg', '-m', '64',
    '-qmp', `unix:${sock},server=on,wait=off`,
    ...disks.flatMap((d, i) => ['-drive', `file=${join(dir, d.path)},format=qcow2,if=virtio,node-name=n${i}`]),
  ], { stdio: 'ignore' });
  const exited = new Promise((r) => qemu.once('exit', r));
  try {
    for (let i = 0; i < 200 && !(await stat(sock).then((s) => s.isSocket(), () => false)); i++) await sleep(50);
    const a = disks[0]!; // the bare commands work on the twin disk, node n1
    const tDriver: number[] = [];
    const tBare: number[] = [];
    for (let i = 1; i <= 30; i++) {
      const viaDriver = async (): Promise<void> => {
        tDriver.push(await timed(() => driver.create({ ...a, qmpSocket: sock }, `es-${i}`, { name: `n${i}` })));
      };
      const bare = async (): Promise<void> => {
        tBare.push(await timed(async () => {
          const qmp = await QmpClient.connect(sock);
          await qmp.execute('query-block');
          await qmp.execute('blockdev-snapshot-internal-sync', { device: 'n1', name: `es-${i}` });
          await qmp.close();
        }));
      };
      // Which side goes first alternates: the second of two back-to-back runs on one QEMU is
      // measurably cheaper, which would otherwise count against whichever side always goes first.
      if (i % 2 === 1) {
        await viaDriver();
        await bare();
      } else {
        await bare();
        await viaDriver();
      }
    }
    report('create one snapshot, live (QMP)', 'connect + query-block + snapshot-sync', median(tDriver), median(tBare));
  } finally {
    qemu.kill('SIGTERM');
    await exited;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
