/**
 * Issue 3 benchmark for the btrfs driver on a loop-mounted btrfs (needs root, btrfs-progs): each
 * operation through the driver beside the same argument arrays spawned through the same
 * NodeCommandRunner in the same run (target: driver within 10 % of the bare commands).
 * 1. create one snapshot: driver (one index record appended, `btrfs subvolume snapshot -r`)
 *    vs the bare snapshot command, 100 times each, alternating;
 * 2. list a disk holding 1,000 snapshots, 50 times each, alternating. Quotas off: the driver runs
 *    no process (folder + the disk's index file); the bare baseline is `btrfs subvolume list -o`. Quotas on:
 *    the driver adds the index to the one `qgroup show` it spawns; the baseline is that command,
 *    and the JSON.parse of its output is timed apart (the share of it any caller must pay);
 * 3. destroy 100 snapshots: driver destroy() of 100 (one `btrfs subvolume delete`) vs the same
 *    argv bare, 15 rounds each, alternating (and alternating which goes first); and 100 single
 *    destroys each way.
 * Medians of 50 lists and 15 destroy rounds: with 20 and 5, runs of unchanged code spread over
 * about 10 points (list with quotas +14.5 to +24 %; one destroy of 100 takes about 5 ms, +-1 ms).
 *
 * Run: npx tsc -p tsconfig.json && node dist/bench/btrfs.bench.js
 */
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { BtrfsDriver } from '../src/storage/btrfs/btrfs.driver.js';
import type { DiskRef } from '../src/storage/driver.js';
import { NodeCommandRunner } from '../src/storage/node-runner.js';
import type { RunOptions } from '../src/storage/runner.js';
import { makeLoopFs } from '../test/platform/loopfs.js';
import { report, rotated, stats, timed } from './driver-timing.js';

/** Counts every process spawned, driver and bare alike. */
let calls = 0;
const runner = new NodeCommandRunner({ onRun: () => void calls++ });
/** What the driver passes with every btrfs command. */
const OPTS: RunOptions = { timeoutMs: 5 * 60_000, env: { LC_ALL: 'C' } };
const LIST_RUNS = 50;
const DESTROY_ROUNDS = 15;

async function bare(argv: readonly string[]): Promise<string> {
  const r = await runner.run(argv, OPTS);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

export async function run(): Promise<void> {
  const fs = await makeLoopFs('btrfs', 2048);
  try {
    const root = join(fs.mountpoint, 'bench');
    await mkdir(root);
    const driver = new BtrfsDriver({ root, runner });
    await driver.init();
    const version = (await bare(['btrfs', '--version'])).trim();
    console.log(`btrfs driver benchmark on a 2 GiB loop-mounted btrfs (${version})`);
    const disk: DiskRef = { path: 'vm/disk0', sizeBytes: 64 * 1024 * 1024 };
    await driver.createDisk(disk);
    const fh = await open(join(root, 'vm', 'disk0', 'disk.img'), 'r+');
    await fh.write(Buffer.alloc(16 * 1024 * 1024, 7), 0);
    await fh.close();
    const subvol = join(root, 'vm', 'disk0');
    const snapDir = join(root, '.snapshots', 'vm', 'disk0');
    const bareDir = join(root, 'bare');
    await mkdir(bareDir);

    // 1. create one snapshot, alternating driver and bare so drift hits both equally, and which
    //    of the two goes first, so the warm second run is not always the bare one.
    const createDriver: number[] = [];
    const createBare: number[] = [];
    for (let i = 1; i <= 100; i++) {
      await rotated(i, [
        async () => createDriver.push(await timed(() => driver.create(disk, `es-${i}`, { name: `bench ${i}` }))),
        async () => createBare.push(await timed(() => bare(['btrfs', 'subvolume', 'snapshot', '-r', subvol, join(bareDir, `es-${i}`)]))),
      ]);
    }
    report('create one snapshot (100 each)', createDriver, createBare);

    // 2. list 1,000 snapshots.
    for (let i = 101; i <= 1000; i++) await driver.create(disk, `es-${i}`, { name: `bench ${i}` });
    if ((await driver.list(disk)).length !== 1000) throw new Error('expected 1,000 snapshots');
    const listBoth = async (label: string, baseline: readonly string[], baselineLabel: string, json = false): Promise<void> => {
      const d: number[] = [];
      const b: number[] = [];
      const parse: number[] = [];
      for (let i = 0; i < LIST_RUNS; i++) {
        const before = calls;
        d.push(await timed(() => driver.list(disk)));
        if (i === 0) console.log(`  (${label}: one list() spawned ${calls - before} process(es))`);
        // As timed(() => bare(baseline)), keeping the output.
        const t0 = performance.now();
        const stdout = await bare(baseline);
        b.push(performance.now() - t0);
        // Outside the timed bare run: what only reading the output costs any caller of the command.
        if (json) {
          const t1 = performance.now();
          JSON.parse(stdout);
          parse.push(performance.now() - t1);
        }
      }
      report(label, d, b, { baseline: baselineLabel });
      if (json) {
        const p = stats(parse).median;
        console.log(`  (JSON.parse of the bare output alone, untimed above: median ${p.toFixed(2)} ms, ${((p / stats(b).median) * 100).toFixed(1)} % of the bare command)`);
      }
    };
    await listBoth(`list 1,000 snapshots, quotas off (${LIST_RUNS} each)`, ['btrfs', 'subvolume', 'list', '-o', snapDir], '`subvolume list -o`');
    await bare(['btrfs', 'quota', 'enable', fs.mountpoint]);
    await bare(['btrfs', 'quota', 'rescan', '-w', fs.mountpoint]);
    await listBoth(`list 1,000 snapshots, quotas on (${LIST_RUNS} each)`, ['btrfs', '--format', 'json', 'qgroup', 'show', '--raw', root], '`qgroup show`', true);
    const sized = (await driver.list(disk)).filter((s) => s.size !== null).length;
    console.log(`  (quotas on: ${sized} of 1,000 snapshots have a size)`);
    await bare(['btrfs', 'quota', 'disable', fs.mountpoint]);

    // 3. destroy 100: batched rounds each way, alternating; then 100 single destroys each way.
    // More snapshots so that every round has its own 100 (es-101 onwards).
    for (let i = 1001; i <= 100 + (2 * DESTROY_ROUNDS + 2) * 100; i++) await driver.create(disk, `es-${i}`, { name: `bench ${i}` });
    let next = 101;
    const take = (): number => ((next += 100), next - 100);
    const ids = (from: number): string[] => Array.from({ length: 100 }, (_, i) => `es-${from + i}`);
    const paths = (from: number): string[] => ids(from).map((id) => join(snapDir, id));
    const batchDriver: number[] = [];
    const batchBare: number[] = [];
    let batchCalls = 0;
    // Which goes first alternates too: of two identical bare deletes of 100 run back to back (12
    // pairs), the first took a median 0.2 ms (4 %) longer here.
    const driverRound = async (): Promise<void> => {
      const before = calls;
      const from = take();
      batchDriver.push(await timed(() => driver.destroy(disk, ids(from))));
      batchCalls = calls - before;
    };
    const bareRound = async (): Promise<void> => {
      const from = take();
      batchBare.push(await timed(() => bare(['btrfs', 'subvolume', 'delete', ...paths(from)])));
    };
    for (let round = 0; round < DESTROY_ROUNDS; round++) {
      if (round % 2 === 0) {
        await driverRound();
        await bareRound();
      } else {
        await bareRound();
        await driverRound();
      }
    }
    report(`destroy 100 snapshots in one call (${DESTROY_ROUNDS} rounds each; driver ran ${batchCalls} process per call)`, batchDriver, batchBare);
    console.log(`  (driver rounds: ${batchDriver.map((t) => t.toFixed(1)).join(', ')} ms; the first compacts the index it finds past 64 KiB, once per doubling)`);
    console.log(`  (bare rounds: ${batchBare.map((t) => t.toFixed(1)).join(', ')} ms)`);
    const singleFrom = take();
    const before = calls;
    const singleDriver = await timed(async () => {
      for (const id of ids(singleFrom)) await driver.destroy(disk, [id]);
    });
    const singleCalls = calls - before;
    const bareSingleFrom = take();
    const singleBare = await timed(async () => {
      for (const path of paths(bareSingleFrom)) await bare(['btrfs', 'subvolume', 'delete', path]);
    });
    const batched = stats(batchDriver).median;
    console.log(
      `destroy 100 snapshots one by one: driver ${singleDriver.toFixed(1)} ms (${singleCalls} processes), bare ${singleBare.toFixed(1)} ms; ` +
        `the driver's batched destroy is ${(singleDriver / batched).toFixed(1)}x faster than its 100 single destroys`,
    );
  } finally {
    // Read-only snapshots cannot be emptied by rm; unmounting the throwaway filesystem drops them all.
    await fs.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
