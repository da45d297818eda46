/**
 * The forced command's `receive` and the restore announcement that may come late: the server
 * queues the announcement to the target node before the restore task to the backup node, but a
 * busy target agent may apply it after the backup node has connected. The receive waits for it
 * (bounded by serve.json's announceWaitMs), then writes the disk; one never announced is refused
 * once the wait is over, and the disk keeps its bytes. serve() runs in-process on a real file
 * storage (the same function sshd runs as the forced command).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readdir } from 'node:fs/promises';
import { FakeGuestAgent } from '../helpers/fake-guest-agent.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { serve } from '../../src/transport/ssh-serve.js';
import { announce } from '../../src/transport/announcements.js';
import { COMMIT_PREFIX } from '../../src/transport/serve-request.js';
import type { ServeConfig } from '../../src/transport/trust-files.js';
import { useTempDirs } from '../helpers/temp-dirs.js';

const TASK = '1e1u1-6f75849b-1a2b-3c4d-5e6f';
const SIZE = 1024 * 1024;

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

describe('ssh-serve receive: a late announcement', () => {
  const tempDir = useTempDirs();

  async function setup(announceWaitMs: number) {
    const dir = await tempDir('esnap-announce-');
    const root = join(dir, 'storage');
    await mkdir(root, { recursive: true });
    const old = Buffer.alloc(SIZE, 1);
    await writeFile(join(root, 'vm1-disk0'), old);
    const config: ServeConfig = { node: 'node1', storages: [{ name: 'tank', driver: 'file', root }], announcedDir: join(dir, 'announced'), announceWaitMs };
    await mkdir(config.announcedDir, { recursive: true });
    const image = randomBytes(SIZE);
    const stdin = new PassThrough();
    stdin.end(Buffer.concat([image, Buffer.from(`${COMMIT_PREFIX}${createHash('sha256').update(image).digest('hex')}\n`)]));
    const stderr = collect();
    const run = serve(config, `receive ${TASK} tank vm1-disk0`, { stdin, stdout: new PassThrough(), stderr: stderr.stream, runner: new NodeCommandRunner(), now: () => new Date() });
    return { config, image, old, run, stderr, disk: join(root, 'vm1-disk0') };
  }

  it('waits for an announcement applied after the backup node connected, then writes the disk', async () => {
    const t = await setup(20_000);
    // The agent applies the announcement only once the receive is already waiting for it.
    await new Promise((res) => setTimeout(res, 400));
    await announce(t.config.announcedDir, { taskId: TASK, storage: 'tank', disk: 'vm1-disk0', sizeBytes: SIZE, until: new Date(Date.now() + 3600_000).toISOString() });
    expect(await t.run, t.stderr.text()).toBe(0);
    expect((await readFile(t.disk)).equals(t.image)).toBe(true);
  });

  it('refuses a receive never announced once the wait is over; the disk keeps its bytes', async () => {
    const t = await setup(300);
    expect(await t.run).toBe(2);
    expect(t.stderr.text()).toMatch(/esnap: refused: no restore task 1e1u1-6f75849b-1a2b-3c4d-5e6f of disk vm1-disk0 on storage tank of node node1 was announced to this node/);
    expect((await readFile(t.disk)).equals(t.old)).toBe(true);
  });
});

/**
 * `snapshot … freeze <task id>`: the guest of a backup with fsfreeze is frozen by the forced
 * command of the disk's node, through the socket the server announced for that task (never one
 * the request names); a fake guest agent on a real unix socket stands for qemu-ga.
 */
describe('ssh-serve snapshot with freeze', () => {
  const tempDir = useTempDirs();

  async function setup() {
    const dir = await tempDir('esnap-serve-freeze-');
    const root = join(dir, 'storage');
    await mkdir(root, { recursive: true });
    await writeFile(join(root, 'vm1-disk0'), Buffer.alloc(SIZE, 3));
    const config: ServeConfig = { node: 'node1', storages: [{ name: 'tank', driver: 'file', root }], announcedDir: join(dir, 'announced'), announceWaitMs: 300 };
    await mkdir(config.announcedDir, { recursive: true });
    const guest = await FakeGuestAgent.start(join(dir, 'qga.sock'));
    const call = async (command: string) => {
      const stderr = collect();
      const code = await serve(config, command, { stdin: new PassThrough(), stdout: new PassThrough(), stderr: stderr.stream, runner: new NodeCommandRunner(), now: () => new Date() });
      return { code, stderr: stderr.text() };
    };
    const snapshots = async () => (await readdir(join(root, '.snapshots', 'vm1-disk0')).catch(() => [])).filter((n) => !n.includes('.'));
    return { config, guest, call, snapshots };
  }
  const until = () => new Date(Date.now() + 3600_000).toISOString();

  it('freezes the announced guest around the snapshot and thaws it', async () => {
    const t = await setup();
    try {
      await announce(t.config.announcedDir, { taskId: TASK, storage: 'tank', disk: 'vm1-disk0', freezeSocket: t.guest.path, until: until() });
      const r = await t.call(`snapshot tank vm1-disk0 is-5 freeze ${TASK}`);
      expect(r, r.stderr).toEqual({ code: 0, stderr: '' });
      expect(t.guest.events.filter((e) => e.startsWith('guest-fsfreeze'))).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
      expect(t.guest.frozen).toBe(false);
      expect(await t.snapshots()).toEqual(['is-5']);
    } finally {
      await t.guest.stop();
    }
  });

  it('without an announcement (or for another disk) takes the snapshot unfrozen and says so; a freeze announcement allows no receive', async () => {
    const t = await setup();
    try {
      await announce(t.config.announcedDir, { taskId: TASK, storage: 'tank', disk: 'vm9-disk0', freezeSocket: t.guest.path, until: until() });
      const r = await t.call(`snapshot tank vm1-disk0 is-6 freeze ${TASK}`);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe(`esnap: freeze: Filesystem freeze failed (no fsfreeze of backup task ${TASK} was announced to node node1)\n`);
      expect(t.guest.events).toEqual([]);
      expect(await t.snapshots()).toEqual(['is-6']);
      // The guest agent does not answer its freeze: the snapshot is still taken, the reason said.
      t.guest.script = { freeze: () => ({ error: { class: 'GenericError', desc: 'failed to freeze /data' } }) };
      await announce(t.config.announcedDir, { taskId: TASK, storage: 'tank', disk: 'vm1-disk0', freezeSocket: t.guest.path, until: until() });
      const f = await t.call(`snapshot tank vm1-disk0 is-7 freeze ${TASK}`);
      expect(f.code).toBe(0);
      expect(f.stderr).toMatch(/^esnap: freeze: Filesystem freeze failed \(failed to freeze \/data\)\n$/);
      expect((await t.snapshots()).sort()).toEqual(['is-6', 'is-7']);
      // The freeze announcement names the disk but has no size: a receive is refused.
      const rec = await t.call(`receive ${TASK} tank vm1-disk0`);
      expect(rec.code).toBe(2);
      expect(rec.stderr).toMatch(/no restore task .* was announced to this node/);
    } finally {
      await t.guest.stop();
    }
  });
});
