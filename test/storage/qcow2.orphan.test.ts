/**
 * qemu-storage-daemon reads its batch of snapshot commands from stdin and waits on its monitor for
 * ever once stdin is gone. An agent killed mid-batch left one holding the image's write lock (the
 * chaos run, seed 1 with 10,000 operations: every write of that qcow2 disk refused for minutes, and
 * the restarted agent did not end it). The driver now runs it under `setpriv --pdeathsig KILL`, so
 * the kernel ends it with its agent. Real qemu-storage-daemon, a real agent-like process killed
 * with SIGKILL while the daemon works through a long batch.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { platformUnavailable } from '../platform/require.js';
import { qemuUnavailable } from '../platform/qemu.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** pids of live qemu-storage-daemon processes whose command line names `image`. */
function daemonsOn(image: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const state = readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]?.[0];
      if (cmd[0] === 'qemu-storage-daemon' && cmd.some((a) => a.includes(image)) && state !== 'Z') out.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

// The agent: the driver's init (which decides the prefix) and then a batch of 5,000 snapshot
// creates in one daemon, which takes seconds.
const AGENT = `
import { Qcow2Driver } from ${JSON.stringify(join(process.cwd(), 'dist/src/storage/qcow2/qcow2.driver.js'))};
import { NodeCommandRunner } from ${JSON.stringify(join(process.cwd(), 'dist/src/storage/node-runner.js'))};
const [root, image] = process.argv.slice(1);
const d = new Qcow2Driver({ root, runner: new NodeCommandRunner() });
await d.init();
const cmds = Array.from({ length: 5000 }, (_, i) => ({ execute: 'blockdev-snapshot-internal-sync', name: 'x' + i }));
console.log('batch');
await d['cmd'].daemonBatch(image, cmds, 'batch');
`;

const reason = await qemuUnavailable();
if (reason !== null) {
  platformUnavailable('qcow2 daemon orphan', reason);
} else {
  let root: string;
  let image: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'esnap-qsd-orphan-'));
    image = join(root, 'disk.qcow2');
    const r = await new NodeCommandRunner().run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '64M']);
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(async () => {
    for (const pid of daemonsOn(image)) process.kill(pid, 'SIGKILL');
    await rm(root, { recursive: true, force: true });
  });

  it('an agent killed mid-batch takes its qemu-storage-daemon with it', async () => {
    const agent = spawn(process.execPath, ['--input-type=module', '-e', AGENT, root, image], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((r) => agent.once('exit', () => r()));
    await new Promise<void>((resolve, reject) => {
      agent.stdout.on('data', (c: Buffer) => c.toString().includes('batch') && resolve());
      agent.once('exit', (code) => reject(new Error(`agent ended before its batch (exit ${code})`)));
    });
    // Killed while its daemon works: the daemon is there.
    let running: number[] = [];
    for (let i = 0; i < 500 && running.length === 0; i++) {
      running = daemonsOn(image);
      if (running.length === 0) await sleep(10);
    }
    expect(running).toHaveLength(1);
    agent.kill('SIGKILL');
    await exited;
    let left = daemonsOn(image);
    for (let i = 0; i < 100 && left.length > 0; i++) {
      await sleep(50);
      left = daemonsOn(image);
    }
    // Before the fix the daemon stayed, holding the image's write lock.
    expect(left).toEqual([]);
  }, 120_000);
}
