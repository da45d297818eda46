/**
 * A real QEMU holding disk images, for platform tests: `qemu-system-x86_64` started as a CHILD
 * process (never -daemonize: a daemonized QEMU is reparented to PID 1 and lingers as a zombie),
 * paused (`-S`: no guest runs, no CPU is burnt, yet the images are open and locked exactly as for
 * a running VM), TCG (works everywhere; KVM here is kvm-pvm), no default devices, 64 MiB.
 *
 * Example:
 *   const vm = await startQemu({ disks: [{ path: img, format: 'qcow2' }] });
 *   try { ...vm.qmpSocket... } finally { await vm.stop(); }
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, constants, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';

export interface QemuDisk {
  /** Absolute path of the image. */
  readonly path: string;
  readonly format: 'qcow2' | 'raw';
  /**
   * `drive` (default): `-drive …,if=virtio,node-name=<nodeName>`; query-block then names the
   * device `virtio0`, … . `blockdev`: `-blockdev` + `-device virtio-blk-pci`; the device name is
   * empty and only the node name identifies the disk.
   */
  readonly attach?: 'drive' | 'blockdev';
  readonly nodeName?: string;
}

export interface QemuOptions {
  readonly disks: readonly QemuDisk[];
  /** Whether QEMU gets a QMP socket (default true). Without one, start-up waits for the image locks. */
  readonly qmp?: boolean;
}

export interface QemuProcess {
  readonly pid: number;
  /** Null when started with `qmp: false`. */
  readonly qmpSocket: string | null;
  /** Resolves once the process has exited (however it ended). */
  readonly exited: Promise<void>;
  /** Ends QEMU by its pid (SIGTERM, SIGKILL after 5 s) and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
}

const QEMU = 'qemu-system-x86_64';
const runner = new NodeCommandRunner();
/** QEMUs of this test process, killed if the process exits without stopping them. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Why a QEMU cannot be started here, or null when it can. */
export async function qemuUnavailable(): Promise<string | null> {
  for (const tool of [QEMU, 'qemu-img', 'qemu-io']) {
    if (!(await onPath(tool))) return `${tool} is not installed (apt-get install qemu-system-x86 qemu-utils)`;
  }
  return null;
}

export async function startQemu(opts: QemuOptions): Promise<QemuProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-qemu-'));
  const qmpSocket = opts.qmp === false ? null : join(dir, 'qmp.sock');
  const args = ['-S', '-nodefaults', '-display', 'none', '-machine', 'q35', '-accel', 'tcg', '-m', '64', '-serial', 'none'];
  if (qmpSocket) args.push('-qmp', `unix:${qmpSocket},server=on,wait=off`);
  opts.disks.forEach((d, i) => args.push(...diskArgs(d, i)));

  const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
    running.delete(child);
  });
  child.once('error', () => undefined); // spawn failure: reported through `exited`

  const stop = once(async () => {
    if (!hasExited) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  });

  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (hasExited) throw new Error(`${QEMU} exited during start-up: ${stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`${QEMU} did not come up within 20 s: ${stderr.trim()}`);
      if (qmpSocket ? await isSocket(qmpSocket) : await allLocked(opts.disks)) break;
      await sleep(50);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  if (child.pid === undefined) throw new Error(`${QEMU} has no pid`);
  return { pid: child.pid, qmpSocket, exited, stop };
}

function diskArgs(d: QemuDisk, i: number): string[] {
  const node = d.nodeName ?? `disk${i}`;
  if (d.attach === 'blockdev') {
    const spec = { driver: d.format, 'node-name': node, file: { driver: 'file', filename: d.path } };
    return ['-blockdev', JSON.stringify(spec), '-device', `virtio-blk-pci,drive=${node},id=vd${i}`];
  }
  // QemuOpts syntax: a comma inside a value is written twice.
  return ['-drive', `file=${d.path.replaceAll(',', ',,')},format=${d.format},if=virtio,node-name=${node}`];
}

/** Without QMP, QEMU is "up" once it holds the lock of every image (the probes of in-use.ts). */
async function allLocked(disks: readonly QemuDisk[]): Promise<boolean> {
  for (const d of disks) {
    const probe = d.format === 'qcow2' ? ['qemu-img', 'info', '-f', 'qcow2', d.path] : ['qemu-io', '-f', 'raw', '-c', 'quit', d.path];
    const r = await runner.run(probe, { timeoutMs: 10_000 });
    if (r.code === 0 || !/lock/.test(r.stderr)) return false;
  }
  return true;
}

async function isSocket(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isSocket(),
    () => false,
  );
}

async function onPath(tool: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && (await access(join(dir, tool), constants.X_OK).then(() => true, () => false))) return true;
  }
  return false;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}
