/**
 * The chaos run (test/chaos/chaos.ts): a private PostgreSQL, two `esnap serve` and two `esnap
 * agent` processes with file, qcow2, btrfs (loop) and zfs-fuse storages; N random operations from
 * several clients while a seeded fault injector kills, restarts, fills and hangs things; then the
 * model, the database and the storage are compared. Prints the summary line, the history around
 * every violation, and exits 1 on any violation.
 *
 * Run (root): npm run chaos -- --ops 300 --seed 1 [--faults 20] [--clients 4] [--checks 2] [--baseline] [--history] [--no-backups] [--no-libvirt]
 * --baseline runs the same workload (same seed) without faults first and prints both throughputs.
 * --no-backups leaves out the backup operations (the snapshot-only workload of the first runs).
 * --no-libvirt registers every VM through the API (by default node2's second VM of each client is a
 * libvirt domain its agent discovers; that needs a running libvirtd).
 */
import { explain, runChaos, type ChaosReport } from '../test/chaos/chaos.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const ops = Number(arg('ops', '300'));
const seed = Number(arg('seed', '1'));
const faults = Number(arg('faults', String(Math.round(ops * 0.02))));
const clients = Number(arg('clients', '4'));
const checks = Number(arg('checks', '2'));
const backups = !process.argv.includes('--no-backups');
const libvirt = !process.argv.includes('--no-libvirt');

let base: ChaosReport | null = null;
if (process.argv.includes('--baseline')) {
  base = await runChaos({ ops, seed, faults: 0, clients, checks, backups, libvirt });
  console.log(`${base.summary()} (baseline without faults: ${base.opsPerS.toFixed(2)} ops/s)`);
}
const report = await runChaos({ ops, seed, faults, clients, checks, backups, libvirt });
if (process.argv.includes('--history')) for (const h of report.history) console.log(h);
console.log(`outcomes: ${JSON.stringify(report.outcomes)}`);
console.log(`operations: ${JSON.stringify(report.kinds)}`);
for (const line of explain(report)) console.log(line);
console.log(report.summary());
console.log(`throughput: ${report.opsPerS.toFixed(2)} ops/s with faults (${report.seconds.toFixed(0)} s)${base ? `, ${base.opsPerS.toFixed(2)} ops/s without (${base.seconds.toFixed(0)} s)` : ''}`);
process.exitCode = report.violations.length > 0 ? 1 : 0;
