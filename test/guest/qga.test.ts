/**
 * The guest agent client against the real `qemu-ga` (Debian's qemu-guest-agent) run on the host on
 * a unix socket. qemu-ga on the host acts on the HOST: its freeze would freeze this machine's
 * filesystems, so it is started with every freeze/thaw command (and every other command that
 * changes the machine) blocked, and the suite refuses to run unless `guest-info` confirms that.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, constants, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFreeze } from '../../src/guest/freeze.js';
import { QgaClient, QgaError } from '../../src/guest/qga.js';
import { platformUnavailable } from '../platform/require.js';

/** Never allowed on the host: freezing, and anything that changes the machine. */
const BLOCKED = [
  'guest-fsfreeze-freeze',
  'guest-fsfreeze-freeze-list',
  'guest-fsfreeze-thaw',
  'guest-fstrim',
  'guest-shutdown',
  'guest-suspend-disk',
  'guest-suspend-ram',
  'guest-suspend-hybrid',
  'guest-set-time',
  'guest-set-vcpus',
  'guest-set-memory-blocks',
  'guest-set-user-password',
  'guest-exec',
  'guest-file-open',
  'guest-file-write',
  'guest-ssh-add-authorized-keys',
  'guest-ssh-remove-authorized-keys',
];

async function findQemuGa(): Promise<string | null> {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin'];
  for (const d of dirs) {
    const p = join(d, 'qemu-ga');
    if (d && (await access(p, constants.X_OK).then(() => true, () => false))) return p;
  }
  return null;
}

const qemuGa = await findQemuGa();

describe('QgaClient against the real qemu-ga on the host (freeze blocked)', () => {
  if (qemuGa === null) {
    platformUnavailable('real qemu-ga', 'qemu-ga is not installed (apt-get install qemu-guest-agent)');
    return;
  }
  let dir: string;
  let sock: string;
  let child: ChildProcess | undefined;
  let stderr = '';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-qga-'));
    sock = join(dir, 'qga.sock');
    child = spawn(qemuGa, ['-m', 'unix-listen', '-p', sock, '-t', dir, '-f', join(dir, 'qga.pid'), '-b', BLOCKED.join(',')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    // The socket file appears at bind(), a moment before listen(): until then a connect is refused
    // (CI saw ECONNREFUSED once), so wait for a connection, not for the file.
    let qga: QgaClient;
    for (let i = 0; ; i++) {
      if (await access(sock).then(() => true, () => false)) {
        const c = await QgaClient.connect(sock).catch((err: unknown) => err as Error);
        if (c instanceof QgaClient) {
          qga = c;
          break;
        }
        if (i > 100) throw c;
      }
      if (child.exitCode !== null || i > 100) throw new Error(`qemu-ga did not start: ${stderr}`);
      await sleep(50);
    }
    // The safety check the whole suite depends on, before anything else talks to the agent.
    try {
      await qga.sync();
      const info = await qga.info();
      for (const name of ['guest-fsfreeze-freeze', 'guest-fsfreeze-freeze-list', 'guest-fsfreeze-thaw']) {
        const cmd = info.supported_commands.find((c) => c.name === name);
        if (cmd === undefined || cmd.enabled) throw new Error(`refusing to test: ${name} is not blocked on the host qemu-ga`);
      }
    } finally {
      await qga.close();
    }
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('syncs, pings and reads the freeze status', async () => {
    const qga = await QgaClient.connect(sock);
    try {
      await qga.sync();
      await qga.ping();
      expect(await qga.fsfreezeStatus()).toBe('thawed');
      expect((await qga.info()).version).toMatch(/^\d+\.\d+\.\d+/);
    } finally {
      await qga.close();
    }
  });

  it('turns an error answer into an agent error and stays usable', async () => {
    const qga = await QgaClient.connect(sock);
    try {
      await qga.sync();
      const err = await qga.execute('guest-no-such-command').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QgaError);
      expect(err).toMatchObject({ kind: 'agent', errorClass: 'CommandNotFound', message: 'The command guest-no-such-command has not been found' });
      await qga.ping();
    } finally {
      await qga.close();
    }
  });

  it('the host agent refuses to freeze', async () => {
    const qga = await QgaClient.connect(sock);
    try {
      await qga.sync();
      await expect(qga.fsfreezeFreeze()).rejects.toMatchObject({
        kind: 'agent',
        message: 'Command guest-fsfreeze-freeze has been disabled',
      });
      expect(await qga.fsfreezeStatus()).toBe('thawed');
    } finally {
      await qga.close();
    }
  });

  it('a late answer to an abandoned command is skipped by the resync, not taken for the next one', async () => {
    const qga = await QgaClient.connect(sock);
    try {
      await qga.sync();
      await expect(qga.execute('guest-info', undefined, { timeoutMs: 0 })).rejects.toMatchObject({
        kind: 'timeout',
        message: 'guest-info timed out after 0 ms',
      });
      // Without the resync this would read guest-info's object and fail as a protocol error.
      expect(await qga.fsfreezeStatus()).toBe('thawed');
      await qga.ping();
    } finally {
      await qga.close();
    }
  });

  it('serves one connection after another, and commands queue on one connection', async () => {
    for (let i = 0; i < 3; i++) {
      const qga = await QgaClient.connect(sock);
      await qga.sync();
      const [a, b, c] = await Promise.all([qga.fsfreezeStatus(), qga.ping(), qga.info()]);
      expect(a).toBe('thawed');
      expect(b).toBeUndefined();
      expect(c.supported_commands.length).toBeGreaterThan(10);
      await qga.close();
      await qga.close(); // twice is fine
      await expect(qga.ping()).rejects.toMatchObject({ kind: 'closed' });
    }
  });

  it('fails to connect to a socket that does not exist', async () => {
    await expect(QgaClient.connect(join(dir, 'nope.sock'))).rejects.toMatchObject({
      kind: 'connect',
      message: `cannot connect to guest agent socket ${join(dir, 'nope.sock')}: ENOENT`,
    });
  });

  it('withFreeze: the blocked freeze is a clean failure; the snapshot still runs', async () => {
    let ran = 0;
    const r = await withFreeze({ socket: sock, limitMs: 10_000 }, async () => {
      ran++;
      return 'snap';
    });
    expect(ran).toBe(1);
    expect(r).toEqual({ value: 'snap', frozen: false, error: 'Filesystem freeze failed (Command guest-fsfreeze-freeze has been disabled)' });
    await expect(access(`${sock}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
    const qga = await QgaClient.connect(sock);
    try {
      await qga.sync();
      expect(await qga.fsfreezeStatus()).toBe('thawed');
    } finally {
      await qga.close();
    }
  });
});
