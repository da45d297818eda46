/**
 * Issue 3 benchmark for the zfs driver on a zfs-fuse pool (needs root and zfs-fuse): each
 * operation through the driver beside the same argument arrays spawned through the same
 * NodeCommandRunner in the same run (target: driver within 10 % of the bare commands).
 * 1. create one snapshot (zfs snapshot + zfs get of its size), 50 times each, alternating;
 * 2. list a disk holding 1,000 snapshots, 20 times each, alternating;
 * 3. destroy 100 snapshots: the driver's destroy() vs 100 single `zfs destroy` calls. zfs-fuse
 *    cannot batch (capability commaDestroy false), so the driver's path IS 100 single calls here;
 *    the batched path (one comma list) needs OpenZFS.
 *
 * Run: npx tsc -p tsconfig.json && node dist/bench/zfs.bench.js
 */
import { NodeCommandRunner } from '../src/storage/node-runner.js';
import type { RunOptions } from '../src/storage/runner.js';
import { listCommand, snapshotCommands } from '../src/storage/zfs/zfs.capabilities.js';
import { ZfsDriver } from '../src/storage/zfs/zfs.driver.js';
import { makeZfsPool } from '../test/platform/zfs.js';
import { report, rotated, timed } from './driver-timing.js';

/** Counts every process the benchmark spawns (driver and bare), to show the driver adds none. */
let calls = 0;
const runner = new NodeCommandRunner({ onRun: () => void calls++ });
/** What the driver passes with every zfs command. */
const OPTS: RunOptions = { timeoutMs: 5 * 60_000, env: { LC_ALL: 'C' } };

async function bare(argv: readonly string[]): Promise<string> {
  const r = await runner.run(argv, OPTS);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

export async function run(): Promise<void> {
  const pool = await makeZfsPool(512);
  try {
    const dataset = `${pool.name}/bench`;
    await bare(['zfs', 'create', dataset]);
    const driver = new ZfsDriver({ dataset, runner });
    await driver.init();
    const caps = driver.zfsCapabilities;
    console.log(`zfs driver benchmark on zfs-fuse; capabilities ${JSON.stringify(caps)}`);
    const disk = (path: string) => ({ path, sizeBytes: 64 * 1024 * 1024 });
    const a = disk('a');
    const b = disk('b');
    for (const d of [a, b]) await driver.createDisk(d);

    // 1. create one snapshot, alternating driver and bare so drift hits both equally, and which
    //    of the two goes first, so the warm second run is not always the bare one.
    const createDriver: number[] = [];
    const createBare: number[] = [];
    for (let i = 1; i <= 50; i++) {
      await rotated(i, [
        async () => createDriver.push(await timed(() => driver.create(a, `es-${i}`, { name: `bench ${i}` }))),
        async () =>
          createBare.push(
            await timed(async () => {
              const props = [`es:snapname=bench ${i}`, `es:created=${Date.now()}`];
              for (const { argv } of snapshotCommands(caps, [`${dataset}/b@es-${i}`], props)) await bare(argv);
              await bare(['zfs', 'get', '-Hp', '-o', 'name,value', caps.sizeProperty, `${dataset}/b@es-${i}`]);
            }),
          ),
      ]);
    }
    report('create one snapshot (50 each)', createDriver, createBare, { difference: 'overhead' });

    // 2. list 1,000 snapshots of one disk.
    const l = disk('list');
    await driver.createDisk(l);
    const t0 = performance.now();
    for (let i = 1; i <= 1000; i++) await bare(['zfs', 'snapshot', '-o', `es:snapname=n${i}`, '-o', `es:created=${Date.now()}`, `${dataset}/list@as-${i}`]);
    console.log(`  (made 1,000 snapshots with bare zfs snapshot in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    const listDriver: number[] = [];
    const listBare: number[] = [];
    for (let i = 0; i < 20; i++) {
      listDriver.push(
        await timed(async () => {
          if ((await driver.list(l)).length !== 1000) throw new Error('driver listed the wrong count');
        }),
      );
      listBare.push(await timed(() => bare(listCommand(caps, `${dataset}/list`))));
    }
    report('list 1,000 snapshots (20 each)', listDriver, listBare, { difference: 'overhead' });

    // 3. destroy 100 snapshots, twice each in turns (older snapshots cost more to destroy).
    const range = (from: number) => Array.from({ length: 100 }, (_, i) => `as-${from + i}`);
    let destroyDriver = 0;
    let destroySingles = 0;
    const singles = async (ids: string[]): Promise<void> => {
      for (const id of ids) await bare(['zfs', 'destroy', `${dataset}/list@${id}`]);
    };
    const callsBefore = calls;
    const t: number[] = [];
    t.push(await timed(() => singles(range(1))));
    t.push(await timed(() => driver.destroy(l, range(101))));
    t.push(await timed(() => driver.destroy(l, range(201))));
    t.push(await timed(() => singles(range(301))));
    console.log('  rounds (bare, driver, driver, bare):', t.map((x) => x.toFixed(0)).join(', '));
    destroySingles = t[0]! + t[3]!;
    destroyDriver = t[1]! + t[2]!;
    const driverCalls = calls - callsBefore - 200;
    console.log(
      `destroy 100 snapshots (mean of 2): driver ${(destroyDriver / 2).toFixed(0)} ms (${driverCalls / 2} zfs destroy calls: ` +
        `${caps.commaDestroy ? 'comma batches' : 'no comma destroy on this zfs'}), ` +
        `100 single bare destroys ${(destroySingles / 2).toFixed(0)} ms, overhead ${(((destroyDriver - destroySingles) / destroySingles) * 100).toFixed(1)} %`,
    );
    if (!caps.commaDestroy) console.log('  batched destroy: not measurable here (zfs-fuse has no comma destroy; OpenZFS needed)');
  } finally {
    await pool.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
