/**
 * The QMP client against a real qemu-system-x86_64 (paused with -S, one qcow2 disk): negotiation,
 * commands paired by id, error answers, events, job-based commands, timeouts and lost connections.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { QmpClient, QmpCommandError, QmpConnectionError, type QmpEvent, type QmpFailure } from '../../src/guest/qmp.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { platformUnavailable } from '../platform/require.js';
import { qemuUnavailable, startQemu, type QemuProcess } from '../platform/qemu.js';

const runner = new NodeCommandRunner();

async function failure(p: Promise<unknown>): Promise<QmpFailure> {
  const err = await p.then(
    () => new Error('expected a QmpConnectionError, but the call succeeded'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(QmpConnectionError);
  return (err as QmpConnectionError).failure;
}

describe('QMP client against a real QEMU', async () => {
  const reason = await qemuUnavailable();
  if (reason !== null) return platformUnavailable('needs qemu-system-x86_64', reason);

  let dir = '';
  let vm: QemuProcess | undefined;
  let qmp: QmpClient | undefined;
  const socket = (): string => vm?.qmpSocket ?? expect.unreachable('QEMU did not start');
  const client = (): QmpClient => qmp ?? expect.unreachable('not connected');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-qmp-'));
    const img = join(dir, 'disk.qcow2');
    const r = await runner.run(['qemu-img', 'create', '-q', '-f', 'qcow2', img, '16M']);
    expect(r.code, r.stderr).toBe(0);
    vm = await startQemu({ disks: [{ path: img, format: 'qcow2', nodeName: 'disk0' }] });
  });
  afterAll(async () => {
    await vm?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    qmp = await QmpClient.connect(socket(), { timeoutMs: 5000 });
  });
  afterEach(async () => {
    await qmp?.close();
    qmp = undefined;
  });

  it('reads the greeting and negotiates capabilities', async () => {
    expect(client().greeting.version.qemu.major).toBeGreaterThanOrEqual(7);
    expect(client().greeting.capabilities).toContain('oob');
    // Out of negotiation mode: a second qmp_capabilities is refused.
    await expect(client().execute('qmp_capabilities')).rejects.toMatchObject({ errorClass: 'CommandNotFound' });
  });

  it('answers query-status of a paused VM', async () => {
    expect(await client().execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
  });

  it('pairs concurrent commands with their answers by id', async () => {
    const [status, name, version, kvm] = await Promise.all([
      client().execute<{ status: string }>('query-status'),
      client().execute<Record<string, unknown>>('query-name'),
      client().execute<{ qemu: { major: number } }>('query-version'),
      client().execute<{ enabled: boolean }>('query-kvm'),
    ]);
    expect(status.status).toBe('prelaunch');
    expect(name).toEqual({});
    expect(version.qemu.major).toBe(client().greeting.version.qemu.major);
    expect(kvm.enabled).toBe(false); // -accel tcg
  });

  it('rejects an error answer with its class and text, and stays usable', async () => {
    const err: unknown = await client().execute('no-such-command').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({ command: 'no-such-command', errorClass: 'CommandNotFound', desc: 'The command no-such-command has not been found' });
    await expect(client().execute('blockdev-snapshot-internal-sync', { device: 'nope', name: 'x' })).rejects.toMatchObject({
      errorClass: 'GenericError',
      desc: "Cannot find device='nope' nor node-name='nope'",
    });
    await expect(client().execute('query-status')).resolves.toMatchObject({ status: 'prelaunch' });
  });

  it('passes arguments and returns the result', async () => {
    await client().execute('blockdev-snapshot-internal-sync', { device: 'disk0', name: 'qmp-1' });
    const deleted = await client().execute<{ name: string; 'date-sec': number }>('blockdev-snapshot-delete-internal-sync', {
      device: 'disk0',
      name: 'qmp-1',
    });
    expect(deleted.name).toBe('qmp-1');
    expect(typeof deleted['date-sec']).toBe('number');
  });

  it('exposes events', async () => {
    const events: QmpEvent[] = [];
    const off = client().onEvent((e) => events.push(e));
    await client().execute('cont');
    await client().execute('stop');
    // Events may trail the answer by a moment.
    for (let i = 0; i < 50 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    off();
    expect(events.map((e) => e.event)).toEqual(['RESUME', 'STOP']);
    expect(typeof events[0]?.timestamp?.seconds).toBe('number');
    expect(await client().execute('query-status')).toMatchObject({ status: 'paused' });
  });

  it('runs a job to its end and dismisses it', async () => {
    await client().executeJob('snapshot-save', { 'job-id': 'save-1', tag: 'job-1', vmstate: 'disk0', devices: ['disk0'] });
    await client().executeJob('snapshot-delete', { 'job-id': 'del-1', tag: 'job-1', devices: ['disk0'] });
    expect(await client().execute('query-jobs')).toEqual([]);
  });

  it('reports the error a job concluded with (read from query-jobs) and still dismisses it', async () => {
    const err: unknown = await client()
      .executeJob('snapshot-save', { 'job-id': 'save-bad', tag: 'job-2', vmstate: 'disk0', devices: ['nope'] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({ errorClass: 'JobError', desc: "No block device node 'nope'" });
    expect(await client().execute('query-jobs')).toEqual([]);
    // A command refused before any job exists is an ordinary error answer.
    await expect(client().executeJob('snapshot-save', { 'job-id': 'x', tag: 't' })).rejects.toMatchObject({ errorClass: 'GenericError' });
  });

  it('times out a command when QEMU does not answer (stopped with SIGSTOP)', async () => {
    const pid = vm?.pid ?? expect.unreachable('no pid');
    process.kill(pid, 'SIGSTOP'); // a hung QEMU, for real
    try {
      const started = Date.now();
      expect(await failure(client().execute('query-status', undefined, { timeoutMs: 300 }))).toBe('timeout');
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // The late answer is dropped by its id; the next command gets its own answer.
    await expect(client().execute('query-status')).resolves.toMatchObject({ status: expect.any(String) });
  });

  it('a second client gets no greeting while the first holds the monitor: timeout, not "no QEMU"', async () => {
    const started = Date.now();
    expect(await failure(QmpClient.connect(socket(), { timeoutMs: 400 }))).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(2000);
    await client().close();
    qmp = await QmpClient.connect(socket(), { timeoutMs: 5000 });
    await expect(client().execute('query-status')).resolves.toBeDefined();
  });

  it('reports nobody listening as unavailable', async () => {
    expect(await failure(QmpClient.connect(join(dir, 'missing.sock')))).toBe('unavailable');
    expect(await failure(QmpClient.connect(dir))).toBe('unavailable'); // not a socket
  });

  it('rejects a peer that does not speak QMP', async () => {
    const path = join(dir, 'not-qmp.sock');
    const server = createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      expect(await failure(QmpClient.connect(path))).toBe('protocol');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('QMP client when QEMU exits', async () => {
  const reason = await qemuUnavailable();
  if (reason !== null) return platformUnavailable('needs qemu-system-x86_64', reason);

  it('fails a pending command with closed, and later calls at once', async () => {
    const vm = await startQemu({ disks: [] });
    const qmp = await QmpClient.connect(vm.qmpSocket ?? '');
    try {
      process.kill(vm.pid, 'SIGSTOP');
      const pending = qmp.execute('query-status', undefined, { timeoutMs: 10_000 });
      process.kill(vm.pid, 'SIGKILL');
      expect(await failure(pending)).toBe('closed');
      expect(await failure(qmp.execute('query-status'))).toBe('closed');
      // Killed QEMU leaves its socket file behind: a stale socket reads as "nobody there".
      await vm.exited;
      expect(await failure(QmpClient.connect(vm.qmpSocket ?? ''))).toBe('unavailable');
    } finally {
      await qmp.close();
      await vm.stop();
    }
  });
});
