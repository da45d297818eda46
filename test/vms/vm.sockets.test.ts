/**
 * The VM's guest sockets (issue 12, defect 3). The node's agent connects to `qmp_socket` and
 * `qga_socket` and talks QMP and the guest-agent protocol on them, so:
 * - only the super admin may set or change them (403 `You do not have permission to perform this
 *   action.` for anyone else; sending the value a VM already has is no change);
 * - a socket that accepts and never answers gives the agent's slot back soon: VMs with silent
 *   guest agents do not keep the node's other tasks waiting.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm } from '../helpers/fixtures.js';

const DENIED = { detail: 'You do not have permission to perform this action.' };

/** A unix socket that accepts connections and never writes a byte (a hung or fake guest agent). */
async function silentSocket(path: string): Promise<{ server: Server; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((c) => void sockets.push(c));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { server, sockets };
}

async function finalStatus(s: TestServer, taskId: string): Promise<unknown> {
  for (;;) {
    const r = await s.req('GET', `/api/task/${taskId}/status/`);
    if (r.status !== 201) return r.body;
    await new Promise((res) => setTimeout(res, 50));
  }
}

forEachDb('VM guest sockets', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let admin: { id: number; key: string };
  let dir: string;
  beforeAll(async () => {
    s = await withServer(kind);
    admin = await makeUser(s, 'dcadmin');
    expect((await s.req('POST', '/api/dc/main/admin/dcadmin/', { body: {} })).status).toBe(201);
    dir = await mkdtemp(join(tmpdir(), 'esnap-sock-'));
  });
  afterAll(async () => {
    await s.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('a DC admin cannot set or change qmp_socket or qga_socket; the super admin can', async () => {
    const key = admin.key;
    for (const field of ['qmp_socket', 'qga_socket']) {
      const r = await s.req('POST', '/api/vm/sock01/define/', { key, body: { [field]: '/run/other.sock' } });
      expect(r.status).toBe(403);
      expect(r.body).toEqual(DENIED);
    }
    expect((await s.req('GET', '/api/vm/sock01/define/')).status).toBe(404); // nothing was created
    const made = await s.req('POST', '/api/vm/sock01/define/', { key, body: { alias: 'sock', qmp_socket: null, qga_socket: '' } });
    expect(made.status).toBe(201);

    expect(await s.req('PUT', '/api/vm/sock01/define/', { key, body: { qga_socket: '/run/x.qga' } })).toMatchObject({ status: 403, body: DENIED });
    const set = await s.req('PUT', '/api/vm/sock01/define/', { body: { qmp_socket: '/run/sock01.qmp', qga_socket: '/run/sock01.qga' } });
    expect(set.body.result).toMatchObject({ qmp_socket: '/run/sock01.qmp', qga_socket: '/run/sock01.qga' });
    // Sending back what the VM has is allowed (a client that PUTs the object it read); any change is not.
    const same = await s.req('PUT', '/api/vm/sock01/define/', { key, body: { alias: 'same', qmp_socket: '/run/sock01.qmp' } });
    expect(same.status).toBe(200);
    for (const body of [{ qmp_socket: null }, { qga_socket: '/run/sock02.qga' }, { alias: 'x', qmp_socket: '/var/run/docker.sock' }]) {
      expect(await s.req('PUT', '/api/vm/sock01/define/', { key, body })).toMatchObject({ status: 403, body: DENIED });
    }
    const row = await s.runtime.ctx.db.selectFrom('vm').select(['alias', 'qmp_socket', 'qga_socket']).where('hostname', '=', 'sock01').executeTakeFirstOrThrow();
    expect(row).toEqual({ alias: 'same', qmp_socket: '/run/sock01.qmp', qga_socket: '/run/sock01.qga' });
  });

  it('guest agents that never answer do not hold up another VM\'s snapshot', async () => {
    const silent = [];
    try {
      // More silent guests than the agent has slots (4): before, each held its slot for the whole
      // 30 s sync budget, so the other VM's snapshot waited about that long.
      for (let i = 0; i < 5; i++) {
        const path = join(dir, `mute${i}.qga`);
        silent.push(await silentSocket(path));
        await makeVm(s, `mute${i}`, { qga: path, status: 2 }); // running: the agent is asked to freeze
      }
      await makeVm(s, 'busy01');
      const t0 = Date.now();
      const frozen = await Promise.all(
        [0, 1, 2, 3, 4].map((i) => s.req('POST', `/api/vm/mute${i}/snapshot/f/`, { body: { fsfreeze: true } })),
      );
      for (const r of frozen) expect(r.status).toBe(201);
      const other = await s.stream('POST', '/api/vm/busy01/snapshot/plain/', { body: {} });
      const waitedMs = Date.now() - t0;
      expect(other.finalStatus).toBe(200);
      console.info(`another VM's snapshot behind 5 silent guest agents: ${waitedMs} ms`);
      // The bound is the agent's answer timeout (3 s) per round of slots, far below the sync budget.
      expect(waitedMs).toBeLessThan(10_000);
      // The silent guests' snapshots were taken anyway, unfrozen, saying why.
      for (const r of frozen) {
        const st = await finalStatus(s, r.body.task_id as string);
        expect(st).toMatchObject({ status: 'SUCCESS', result: { returncode: 0 } });
        expect(JSON.stringify(st)).toContain('Filesystem freeze failed');
      }
      expect(silent.reduce((n, x) => n + x.sockets.length, 0)).toBeGreaterThanOrEqual(5); // each guest was tried
    } finally {
      for (const x of silent) {
        for (const c of x.sockets) c.destroy();
        await new Promise((r) => x.server.close(r));
      }
    }
  });
});
