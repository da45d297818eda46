/**
 * fsfreeze of a VM on another node than its backup node, on PostgreSQL with two agents and a
 * private sshd (backup-cluster.ts): the guest agent's socket is on compute1, so the server
 * announces the backup task's freeze to compute1 and backup1 asks compute1's forced command for
 * `snapshot … freeze <task id>`; compute1 freezes the guest through the announced socket around
 * the snapshot and thaws it. A fake guest agent on a real unix socket on compute1 stands for
 * qemu-ga (fake at the process edge only); the pid in the freeze's lock file tells which process
 * froze it. Before, backup1's agent itself tried the socket path of compute1's VM. A freeze the guest refuses leaves the backup made,
 * unfrozen, with Danube's message in its detail. The announcement is withdrawn after each task.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTempDirs } from '../helpers/temp-dirs.js';
import { FakeGuestAgent } from '../helpers/fake-guest-agent.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';
import { sshdUnavailable } from '../platform/sshd.js';
import { makeNodeVm, waitFor } from '../cluster/cluster.helpers.js';
import { SSH_SERVE_BIN, startBackupCluster, type BackupCluster } from './backup-cluster.js';

describe('backups in a cluster: fsfreeze of a VM on another node', async () => {
  const reason = (await sshdUnavailable()) ?? (await resticUnavailable());
  if (reason !== null) return platformUnavailable('cluster backups with fsfreeze over SSH', reason);

  const tempDir = useTempDirs();
  let cluster: BackupCluster;
  let guest: FakeGuestAgent;

  beforeAll(async () => {
    const root = await tempDir('esnap-bkp-freeze-');
    cluster = await startBackupCluster(root);
    guest = await FakeGuestAgent.start(join(root, 'web01-qga.sock'));
  }, 180_000);
  afterAll(async () => {
    await guest?.stop();
    await cluster?.stop();
  });

  it('compute1 freezes the guest around the snapshot backup1 asks for; a refused freeze still backs up, and says so', async () => {
    const s = cluster.server;
    await makeNodeVm(s, 'compute1', 'web01', { disks: [8], status: 2, qga: guest.path });
    const def = await s.req('POST', '/api/vm/web01/define/backup/daily', { body: { type: 2, node: 'backup1', zpool: 'backup', schedule: '0 2 * * *', retention: 3, fsfreeze: true } });
    expect(def.status, def.text).toBe(201);
    const announced = async (): Promise<string[]> => (await readdir(join(cluster.root, 'compute-ssh', 'announced')).catch(() => [])).filter((n) => n.endsWith('.json'));

    // Who froze: the freeze's lock file (`<socket>.lock`) holds the freezing process's pid. backup1's
    // agent runs in this test process; compute1's forced command is a process sshd started.
    const freezers: string[] = [];
    guest.script = {
      freeze: async () => {
        const pid = (await readFile(`${guest.path}.lock`, 'utf8')).trim();
        freezers.push((await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' '));
        return { return: 2 };
      },
    };
    const c = await s.stream('POST', '/api/vm/web01/backup/daily', { body: {} });
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    expect(freezers).toHaveLength(1);
    expect(freezers[0]).toContain(SSH_SERVE_BIN);
    expect(JSON.stringify(c.final)).not.toMatch(/msg=|freeze failed|not possible/);
    expect(guest.events.filter((e) => e.startsWith('guest-fsfreeze'))).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
    expect(guest.frozen).toBe(false);
    const row = await s.runtime.ctx.db.selectFrom('backup').select(['fsfreeze', 'status']).executeTakeFirstOrThrow();
    expect(row).toEqual({ fsfreeze: 1, status: 1 });
    await waitFor('the freeze announcement withdrawn', async () => (await announced()).length === 0, 30_000, 100);

    // The guest refuses the freeze: the backup is made all the same, its detail says why it is not frozen.
    await new Promise((res) => setTimeout(res, 1100)); // backup names have a resolution of one second
    guest.script = { freeze: () => ({ error: { class: 'GenericError', desc: 'failed to freeze /data' } }) };
    const f = await s.stream('POST', '/api/vm/web01/backup/daily', { body: {} });
    expect(f.finalStatus, JSON.stringify(f.final)).toBe(200);
    expect(JSON.stringify(f.final)).toContain('Filesystem freeze failed (failed to freeze /data)');
    expect((await s.req('GET', '/api/vm/web01/backup', { query: { full: 'true' } })).body.result.map((b: { status: number }) => b.status)).toEqual([1, 1]);
    await waitFor('the freeze announcement withdrawn', async () => (await announced()).length === 0, 30_000, 100);
  }, 600_000);
});
