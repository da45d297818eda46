/**
 * The full kill -9 series (test/crash/kill-series.ts): for each driver that writes a disk in place
 * (file: rollback and restore; qcow2: restore, and rollback for comparison), N rollbacks or
 * restores of a multi-GiB image are killed at random instants (the server's process group, as a
 * crash or `systemctl kill` would), the server restarted, its recovery awaited, and the image
 * checked byte for byte: it must hold its old content or the snapshot's. Prints one line per kill
 * and a summary table; exits 1 if any kill left anything else.
 *
 * Run: npm run crash-series [-- --kills 20 --size-mib 2048 --drivers file,qcow2 --ops rollback,restore --dir /mnt/xfs --pid-only]
 */
import { runKillSeries, type SeriesDriver, type SeriesOp, type SeriesReport } from '../test/crash/kill-series.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const kills = Number(arg('kills', '20'));
const sizeMiB = Number(arg('size-mib', '2048'));
const drivers = arg('drivers', 'file,qcow2').split(',') as SeriesDriver[];
const ops = arg('ops', 'rollback,restore').split(',') as SeriesOp[];
const parent = arg('dir', '') || undefined;
const pidOnly = process.argv.includes('--pid-only');

const reports: SeriesReport[] = [];
for (const driver of drivers) {
  for (const op of ops) {
    reports.push(await runKillSeries({ driver, op, kills, sizeMiB, pidOnly, ...(parent ? { parent } : {}), log: (l) => console.log(l) }));
  }
}
console.log('\n| driver | op | size | uninterrupted | kills | old | snapshot | other | not usable | leftovers |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
let bad = 0;
for (const r of reports) {
  const n = (f: (o: SeriesReport['outcomes'][number]) => boolean) => r.outcomes.filter(f).length;
  const other = n((o) => o.state === 'other');
  const unusable = n((o) => !o.usable);
  const left = n((o) => o.leftovers.length > 0);
  bad += other + unusable + left;
  console.log(`| ${r.driver} | ${r.op} | ${r.sizeMiB} MiB | ${(r.opMs / 1000).toFixed(1)} s | ${r.outcomes.length} | ${n((o) => o.state === 'old')} | ${n((o) => o.state === 'snapshot')} | ${other} | ${unusable} | ${left} |`);
}
process.exitCode = bad > 0 ? 1 : 0;
