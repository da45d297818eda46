/**
 * A real Debian guest for platform tests: built once by `guest/build-guest.sh` (cached under
 * /var/cache/esnap-test-guest/<hash>/), booted under qemu-system-x86_64 with TCG (this host's KVM
 * cannot boot a Linux kernel) as a child process, with qemu-ga inside on the virtio-serial port
 * org.qemu.guest_agent.0 behind a host unix socket, and an optional raw data disk that the guest
 * mounts on /data. Each boot writes to its own qcow2 overlay, so the cached root image is never
 * changed and several guests may run at once. Needs root.
 *
 * Example:
 *   const reason = await guestUnavailable();
 *   if (reason !== null) return platformUnavailable('real guest', reason);
 *   const g = await bootGuest({ dataSizeMb: 64 });
 *   try { ...talk to g.qgaSocket, read g.dataImage... } finally { await g.stop(); }
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, constants, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { QgaClient } from '../../src/guest/qga.js';

const BUILD_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'guest', 'build-guest.sh');
/** The pid in the folder name tells the reaper whether the test process that booted it is gone. */
const PREFIX = 'esnap-guest-';
/** debootstrap, mkfs and chroot live in sbin, which a non-login PATH may lack. */
const ENV = { ...process.env, PATH: `${process.env.PATH ?? '/usr/bin:/bin'}${delimiter}/usr/sbin${delimiter}/sbin` };

export interface Guest {
  readonly dir: string;
  /** Host side of the guest agent's virtio-serial port. */
  readonly qgaSocket: string;
  /** The raw image attached as /dev/vdb and mounted on /data in the guest, if any. */
  readonly dataImage: string | null;
  readonly pid: number;
  readonly serialLog: string;
  /** Milliseconds from spawning qemu to the first guest-ping answer. */
  readonly bootMs: number;
  stop(): Promise<void>;
}

export interface BootOptions {
  /** Size of a fresh ext4 data disk; omit for none. */
  readonly dataSizeMb?: number;
  /** How long to wait for the guest agent. Default 180 s (TCG on a busy 2-core machine). */
  readonly timeoutMs?: number;
}

/** Why no guest can be built and booted here, or null when it can. */
export async function guestUnavailable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'the test guest needs root (debootstrap, chroot)';
  for (const tool of ['qemu-system-x86_64', 'qemu-img', 'debootstrap', 'mkfs.ext4', 'dumpe2fs', 'debugfs', 'flock']) {
    if (!(await onPath(tool))) return `${tool} is not installed (apt-get install qemu-system-x86 qemu-utils debootstrap e2fsprogs util-linux)`;
  }
  return null;
}

let built: Promise<{ dir: string; ms: number }> | undefined;

/** Builds the guest (or finds it cached); returns the cache folder. Once per process. */
export function buildGuest(): Promise<{ dir: string; ms: number }> {
  return (built ??= (async () => {
    const started = Date.now();
    const r = await run(['bash', BUILD_SCRIPT], 20 * 60_000);
    if (r.code !== 0) throw new Error(`build-guest.sh failed (exit ${r.code}): ${r.stderr.trim().slice(-3000)}`);
    const dir = r.stdout.trim().split('\n').at(-1) ?? '';
    return { dir, ms: Date.now() - started };
  })());
}

export async function bootGuest(opts: BootOptions = {}): Promise<Guest> {
  await reapStale();
  const image = (await buildGuest()).dir;
  const dir = await mkdtemp(join(tmpdir(), `${PREFIX}${process.pid}-`));
  const qgaSocket = join(dir, 'qga.sock');
  const serialLog = join(dir, 'serial.log');
  let child: ChildProcess | undefined;
  const stop = once(async () => {
    process.off('exit', killOnExit);
    if (child) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  });
  const killOnExit = (): void => {
    child?.kill('SIGKILL'); // a dying test process must not leave a TCG guest burning a core
  };
  try {
    const overlay = join(dir, 'root.qcow2');
    await check(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', join(image, 'rootfs.img'), '-F', 'raw', overlay]);
    let dataImage: string | null = null;
    const dataArgs: string[] = [];
    if (opts.dataSizeMb !== undefined) {
      dataImage = join(dir, 'data.raw');
      await check(['truncate', '-s', `${opts.dataSizeMb}M`, dataImage]);
      await check(['mkfs.ext4', '-q', '-F', '-L', 'data', dataImage]);
      dataArgs.push(
        '-blockdev', `driver=file,filename=${dataImage},node-name=datafile`,
        '-blockdev', 'driver=raw,file=datafile,node-name=data0',
        '-device', 'virtio-blk-pci,drive=data0',
      );
    }
    // prettier-ignore
    const argv = [
      '-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', '512',
      '-display', 'none', '-nodefaults', '-no-reboot',
      '-kernel', join(image, 'vmlinuz'), '-initrd', join(image, 'initrd.img'),
      '-append', 'root=/dev/vda rw console=ttyS0 init=/sbin/esnap-init panic=-1 loglevel=4',
      '-serial', `file:${serialLog}`,
      '-blockdev', `driver=file,filename=${overlay},node-name=rootfile`,
      '-blockdev', 'driver=qcow2,file=rootfile,node-name=root0',
      '-device', 'virtio-blk-pci,drive=root0',
      ...dataArgs,
      '-device', 'virtio-serial-pci',
      '-chardev', `socket,path=${qgaSocket},server=on,wait=off,id=qga0`,
      '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
    ];
    const started = Date.now();
    let stderr = '';
    child = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'ignore', 'pipe'], env: ENV });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    process.on('exit', killOnExit);
    const pid = child.pid;
    if (pid === undefined) throw new Error('qemu-system-x86_64 did not start');
    await writeFile(join(dir, 'qemu.pid'), `${pid}\n`);
    const spawned = child;
    await waitForAgent(qgaSocket, opts.timeoutMs ?? 180_000, () =>
      spawned.exitCode !== null || spawned.signalCode !== null ? `qemu exited: ${stderr.trim()}` : null,
    ).catch(async (err: Error) => {
      const serial = await readFile(serialLog, 'utf8').catch(() => '');
      throw new Error(`${err.message}\n--- serial console (tail) ---\n${serial.slice(-3000)}`);
    });
    return { dir, qgaSocket, dataImage, pid, serialLog, bootMs: Date.now() - started, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Polls the agent with short syncs and a ping until it answers. */
async function waitForAgent(socket: string, timeoutMs: number, exited: () => string | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'socket not there yet';
  while (Date.now() < deadline) {
    const gone = exited();
    if (gone !== null) throw new Error(gone);
    if (await exists(socket)) {
      const qga = await QgaClient.connect(socket, { timeoutMs: 2_000 }).catch((err: Error) => {
        last = err.message;
        return null;
      });
      if (qga) {
        try {
          await qga.sync({ attempts: 1, attemptTimeoutMs: 1_000 });
          await qga.ping({ timeoutMs: 2_000 });
          return;
        } catch (err) {
          last = (err as Error).message;
        } finally {
          await qga.close();
        }
      }
    }
    await sleep(500);
  }
  throw new Error(`guest agent did not answer guest-ping within ${timeoutMs} ms (${last})`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Stops guests, and removes their folders, left by test processes that died. */
async function reapStale(): Promise<void> {
  for (const name of await readdir(tmpdir())) {
    const owner = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1];
    if (owner === undefined || isAlive(Number(owner))) continue;
    const dir = join(tmpdir(), name);
    const pid = Number((await readFile(join(dir, 'qemu.pid'), 'utf8').catch(() => '')).trim());
    // Only a qemu that runs on this very folder: the pid may have been reused since.
    if (pid > 0 && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(dir)) {
      console.warn(`guest: stopping qemu ${pid} left by dead process ${owner}`);
      process.kill(pid, 'SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  }
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(argv: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

async function check(argv: string[]): Promise<void> {
  const r = await run(argv, 60_000);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function onPath(tool: string): Promise<boolean> {
  for (const d of [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin']) {
    if (d && (await exists(join(d, tool), constants.X_OK))) return true;
  }
  return false;
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
