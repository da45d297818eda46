/**
 * withFreeze against a scripted guest agent on a real unix socket: the failures a real qemu-ga
 * cannot be made to produce on the host (a freeze that hangs or returns 0, a thaw that fails or
 * thaws too few, syncs lost or answered late, junk on the line). The real agent is exercised in
 * qga.test.ts (on the host, freeze blocked) and freeze.guest.test.ts (a real guest).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withFreeze, type FreezeParams } from '../../src/guest/freeze.js';
import { FakeGuestAgent } from '../helpers/fake-guest-agent.js';

let dir: string;
let sock: string;
let agent: FakeGuestAgent | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'esnap-freeze-'));
  sock = join(dir, 'qga.sock');
});
afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** Short timeouts so failure paths finish quickly; each test overrides what it exercises. */
function params(over: Partial<FreezeParams> = {}): FreezeParams {
  return { socket: sock, limitMs: 10_000, timeouts: { connectMs: 1_000, syncMs: 1_600, freezeMs: 2_000, thawMs: 1_000, lockMs: 1_000 }, ...over };
}

describe('withFreeze', () => {
  it('freezes, runs the snapshot while frozen, thaws after it', async () => {
    agent = await FakeGuestAgent.start(sock);
    let frozenDuringFn: boolean | undefined;
    const r = await withFreeze(params(), async () => {
      frozenDuringFn = agent!.frozen;
      expect(existsSync(`${sock}.lock`)).toBe(true);
      return 'snap';
    });
    expect(r).toEqual({ value: 'snap', frozen: true, error: null });
    expect(frozenDuringFn).toBe(true);
    expect(agent.frozen).toBe(false);
    // One connection per phase, each starting with a sync.
    expect(agent.events).toEqual(['guest-sync', 'guest-fsfreeze-freeze', 'guest-sync', 'guest-fsfreeze-thaw']);
    expect(existsSync(`${sock}.lock`)).toBe(false);
  });

  it('runs the snapshot directly when the socket file is missing', async () => {
    let ran = false;
    const r = await withFreeze(params(), async () => {
      ran = true;
      return 1;
    });
    expect(r).toEqual({ value: 1, frozen: false, error: 'guest agent socket not found' });
    expect(ran).toBe(true);
    expect(existsSync(`${sock}.lock`)).toBe(false);
  });

  it('a freeze that returns 0 still takes the snapshot, unfrozen, and thaws as Danube does', async () => {
    agent = await FakeGuestAgent.start(sock, { freeze: () => ({ return: 0 }) });
    const r = await withFreeze(params(), async () => 'snap');
    expect(r).toEqual({ value: 'snap', frozen: false, error: 'Filesystem freeze failed (0)' });
    expect(agent.events).toEqual(['guest-sync', 'guest-fsfreeze-freeze', 'guest-sync', 'guest-fsfreeze-thaw']);
  });

  it('an error answer to the freeze needs no thaw', async () => {
    agent = await FakeGuestAgent.start(sock, {
      freeze: () => ({ error: { class: 'GenericError', desc: 'failed to freeze /data: Device or resource busy' } }),
    });
    const r = await withFreeze(params(), async () => 'snap');
    expect(r).toEqual({ value: 'snap', frozen: false, error: 'Filesystem freeze failed (failed to freeze /data: Device or resource busy)' });
    expect(agent.events).toEqual(['guest-sync', 'guest-fsfreeze-freeze']);
    expect(existsSync(`${sock}.lock`)).toBe(false);
  });

  it('a freeze that times out is thawed before the snapshot runs', async () => {
    agent = await FakeGuestAgent.start(sock, {
      freeze: () => {
        agent!.frozen = true; // the guest froze, but the answer never comes
        return 'silence';
      },
    });
    let frozenDuringFn: boolean | undefined;
    const r = await withFreeze(params({ timeouts: { freezeMs: 300, syncMs: 1_600 } }), async () => {
      frozenDuringFn = agent!.frozen;
      return 'snap';
    });
    expect(r).toEqual({ value: 'snap', frozen: false, error: 'Filesystem freeze failed (guest-fsfreeze-freeze timed out after 300 ms)' });
    expect(frozenDuringFn).toBe(false);
    expect(agent.events).toEqual(['guest-sync', 'guest-fsfreeze-freeze', 'guest-sync', 'guest-fsfreeze-thaw']);
  });

  it('thaws when the snapshot throws, and rethrows its error', async () => {
    agent = await FakeGuestAgent.start(sock);
    const boom = new Error('disk full');
    await expect(withFreeze(params(), () => Promise.reject(boom))).rejects.toBe(boom);
    expect(agent.frozen).toBe(false);
    expect(agent.events.at(-1)).toBe('guest-fsfreeze-thaw');
    expect(existsSync(`${sock}.lock`)).toBe(false);
  });

  it('thaws at the hard limit while the snapshot still runs; the result still counts', async () => {
    agent = await FakeGuestAgent.start(sock);
    let thawedBeforeFnEnded: boolean | undefined;
    const started = Date.now();
    const r = await withFreeze(params({ limitMs: 200 }), async () => {
      await sleep(900);
      thawedBeforeFnEnded = !agent!.frozen;
      return 'late';
    });
    expect(thawedBeforeFnEnded).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(r).toEqual({
      value: 'late',
      frozen: false,
      error: 'Filesystem freeze failed (thawed at the freeze limit of 0.2 s before the snapshot finished)',
    });
    // Thawed once, at the limit, not again when the snapshot ended.
    expect(agent.events.filter((e) => e === 'guest-fsfreeze-thaw')).toHaveLength(1);
  });

  it('the limit also cuts a freeze that hangs', async () => {
    agent = await FakeGuestAgent.start(sock, { freeze: () => 'silence' });
    const r = await withFreeze(params({ limitMs: 250 }), async () => 'snap');
    expect(r.error).toBe('Filesystem freeze failed (guest-fsfreeze-freeze timed out after 250 ms)');
    expect(agent.events.at(-1)).toBe('guest-fsfreeze-thaw');
  });

  it('reports a thaw the agent refuses, without retrying it; the snapshot was frozen', async () => {
    agent = await FakeGuestAgent.start(sock, { thaw: () => ({ error: { class: 'GenericError', desc: 'thaw went wrong' } }) });
    const r = await withFreeze(params(), async () => 'snap');
    expect(r).toEqual({ value: 'snap', frozen: true, error: 'Filesystem thaw failed (thaw went wrong)' });
    expect(agent.events.filter((e) => e === 'guest-fsfreeze-thaw')).toHaveLength(1);
    expect(existsSync(`${sock}.lock`)).toBe(false);
  });

  it('retries a thaw whose connection dropped', async () => {
    let thaws = 0;
    agent = await FakeGuestAgent.start(sock, { thaw: () => (++thaws === 1 ? 'hangup' : { return: 2 }) });
    const r = await withFreeze(params(), async () => 'snap');
    expect(r).toEqual({ value: 'snap', frozen: true, error: null });
    expect(thaws).toBe(2);
  });

  it('fewer filesystems thawed than frozen is a thaw failure', async () => {
    agent = await FakeGuestAgent.start(sock, { thaw: () => ({ return: 1 }) });
    const r = await withFreeze(params(), async () => 'snap');
    expect(r).toEqual({ value: 'snap', frozen: true, error: 'Filesystem thaw failed (thawed 1 of 2 filesystems)' });
  });

  it('skips stale lines and lost syncs until its own id comes back', async () => {
    agent = await FakeGuestAgent.start(sock, {
      // The first two syncs of each phase are lost; junk and stale answers precede every reply.
      sync: (n, id) => (n % 3 === 0 ? { return: id } : 'silence'),
      noise: ['{"return": 12345}', '{"error": {"class": "GenericError", "desc": "JSON parse error, stray"}}', 'not json', '\xff{"return": {}}'],
    });
    const r = await withFreeze(params({ timeouts: { syncMs: 16 * 150 } }), async () => 'snap');
    expect(r).toEqual({ value: 'snap', frozen: true, error: null });
    expect(agent.syncs).toBe(6);
  });

  it('a guest that never answers the sync: snapshot unfrozen, nothing sent to thaw', async () => {
    agent = await FakeGuestAgent.start(sock, { sync: () => 'silence' });
    const r = await withFreeze(params({ timeouts: { syncMs: 16 * 20 } }), async () => 'snap');
    expect(r).toEqual({ value: 'snap', frozen: false, error: 'Filesystem freeze failed (guest-sync got no answer after 16 attempts)' });
    expect(agent.syncs).toBe(16);
    expect(agent.events).not.toContain('guest-fsfreeze-freeze');
    expect(agent.events).not.toContain('guest-fsfreeze-thaw');
  });

  it('an agent that refuses connections: snapshot unfrozen', async () => {
    // A process that bound the socket and died: the file stays, nobody listens.
    spawnSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(sock)}, () => process.exit(0))`]);
    expect(existsSync(sock)).toBe(true);
    const r = await withFreeze(params(), async () => 'snap');
    expect(r.frozen).toBe(false);
    expect(r.error).toMatch(/^Filesystem freeze failed \(cannot connect to guest agent socket .*qga\.sock: ECONNREFUSED\)$/);
  });

  it('two freezes of one guest never overlap', async () => {
    agent = await FakeGuestAgent.start(sock, {
      freeze: async () => {
        await sleep(50);
        return { return: 2 };
      },
    });
    const run = (name: string) =>
      withFreeze(params({ timeouts: { lockMs: 5_000 } }), async () => {
        await sleep(100);
        return name;
      });
    const [a, b] = await Promise.all([run('a'), run('b')]);
    expect([a, b]).toEqual([
      { value: 'a', frozen: true, error: null },
      { value: 'b', frozen: true, error: null },
    ]);
    expect(agent.overlapped).toBe(false);
    const order = agent.events.filter((e) => e !== 'guest-sync');
    expect(order).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw', 'guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
  });

  it('breaks a lock left by a process that is gone', async () => {
    agent = await FakeGuestAgent.start(sock);
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid;
    await writeFile(`${sock}.lock`, `${dead}\n`);
    const r = await withFreeze(params(), async () => 'snap');
    expect(r).toEqual({ value: 'snap', frozen: true, error: null });
    expect(existsSync(`${sock}.lock`)).toBe(false);
  });

  it('waits for a live holder, then takes the snapshot unfrozen and leaves its lock alone', async () => {
    agent = await FakeGuestAgent.start(sock);
    await writeFile(`${sock}.lock`, `${process.ppid}\n`); // a live process that is not us
    const started = Date.now();
    const r = await withFreeze(params({ timeouts: { lockMs: 300 } }), async () => 'snap');
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(r).toEqual({
      value: 'snap',
      frozen: false,
      error: `Filesystem freeze failed (could not acquire guest agent socket lock ${sock}.lock (held by pid ${process.ppid}))`,
    });
    expect(agent.events).toEqual([]);
    expect(await readFile(`${sock}.lock`, 'utf8')).toBe(`${process.ppid}\n`);
  });

  it('a lock with our pid that this process does not hold is stale (pid reuse after a restart)', async () => {
    agent = await FakeGuestAgent.start(sock);
    await writeFile(`${sock}.lock`, `${process.pid}\n`);
    const r = await withFreeze(params(), async () => 'snap');
    expect(r.frozen).toBe(true);
  });
});
