/**
 * A private OpenSSH server per test: its own host key, config and loopback port, reading the
 * authorized-keys file an esnap agent maintains for one user (`Match User`), exactly the lines the
 * README gives for a host's sshd. Needs root (sshd's privilege separation) and openssh-server.
 *
 * Example:
 *   const sshd = await startSshd({ dir, authorizedKeysFile: join(agentSshDir, 'authorized_keys') });
 *   // ESNAP_NODE_ADDRESS=root@127.0.0.1:<sshd.port>, known host key: sshd.hostKey
 *   await sshd.stop();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createConnection } from 'node:net';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { freePort } from '../helpers/esnap-process.js';

const runner = new NodeCommandRunner();
export const SSHD = '/usr/sbin/sshd';

export interface PrivateSshd {
  readonly port: number;
  /** `ssh-ed25519 <base64>`: the server's host key. */
  readonly hostKey: string;
  readonly hostKeyFile: string;
  /** The user the test connects as (root: the forced command needs zfs and btrfs). */
  readonly user: string;
  /** Kills the listener and every session it started (a dropped connection mid-transfer). */
  stop(): Promise<void>;
  /** What sshd logged (-e: to stderr). */
  log(): string;
}

/** Why a private sshd cannot run here, or null. */
export async function sshdUnavailable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'a private sshd needs root';
  for (const tool of [SSHD, '/usr/bin/ssh', '/usr/bin/ssh-keygen', '/usr/bin/ssh-keyscan']) {
    const ok = await access(tool).then(
      () => true,
      () => false,
    );
    if (!ok) return `${tool} is not installed (apt-get install openssh-server openssh-client)`;
  }
  return null;
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('data', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** Pids of every process descended from `pid` (read from /proc). */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => null);
    if (stat === null) continue;
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    parents.set(ppid, [...(parents.get(ppid) ?? []), Number(name)]);
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of parents.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

export async function startSshd(opts: { dir: string; authorizedKeysFile: string; user?: string }): Promise<PrivateSshd> {
  const user = opts.user ?? 'root';
  await mkdir(opts.dir, { recursive: true });
  await mkdir('/run/sshd', { recursive: true }); // privilege separation folder sshd insists on
  const hostKeyFile = join(opts.dir, 'ssh_host_ed25519_key');
  const r = await runner.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'esnap-test-host', '-f', hostKeyFile]);
  if (r.code !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
  const hostKey = (await readFile(`${hostKeyFile}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  const port = await freePort();
  const config = join(opts.dir, 'sshd_config');
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKeyFile}`,
      `PidFile ${join(opts.dir, 'sshd.pid')}`,
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      // The agents' folders are below os.tmpdir() (mode 1777), which StrictModes refuses; a host's
      // ESNAP_SSH_DIR lies in the data dir, root's and 0700 (the README's lines keep StrictModes).
      'StrictModes no',
      // Nobody else's keys: only the user below, and only from esnap's file.
      'AuthorizedKeysFile none',
      `Match User ${user}`,
      `    AuthorizedKeysFile ${opts.authorizedKeysFile}`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (c: Buffer) => (log += c.toString()));
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`sshd exited (${child.exitCode}): ${log}`);
    if (await portAnswers(port)) break;
    if (i > 100) throw new Error(`sshd did not answer on port ${port}: ${log}`);
    await sleep(100);
  }
  return {
    port,
    hostKey,
    hostKeyFile: `${hostKeyFile}.pub`,
    user,
    log: () => log,
    async stop() {
      const gone = (): boolean => child.exitCode !== null || child.signalCode !== null;
      if (child.pid === undefined || gone()) return;
      const sessions = await descendants(child.pid);
      child.kill('SIGKILL');
      for (const pid of sessions) {
        try {
          // Only sshd's own session processes: the forced command then sees its connection gone.
          const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
          if (comm === 'sshd') process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      if (!gone()) await new Promise((r) => child.once('exit', r));
    },
  };
}

/**
 * Waits (up to `timeoutMs`) until no process's command line contains one of `markers` (a pool's
 * name, an agent's folder): after sshd was stopped mid-transfer, the forced command and its
 * `zfs send` end on their own once they notice the broken pipe, which a loaded machine may delay.
 */
export async function waitForProcessesGone(markers: readonly string[], timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    let found = false;
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
      if (markers.some((m) => cmd.includes(m))) found = true;
    }
    if (!found || Date.now() > until) return;
    await sleep(200);
  }
}
