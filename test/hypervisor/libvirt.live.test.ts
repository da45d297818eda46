/**
 * A running libvirt domain (real libvirtd, TCG, no OS: QEMU runs and holds its images) protected
 * through esnap (issue 14): status from libvirt, live snapshots of a qcow2 disk through libvirt's
 * monitor and of a raw disk at the storage layer, rollback refused while it runs (by the API from
 * the recorded state, and by the agent right before writing when the record is stale), allowed
 * once it is destroyed; socket fields not writable. One database: nothing here depends on it.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServer, type TestServer } from '../helpers/server.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { waitFor } from '../cluster/cluster.helpers.js';
import { platformUnavailable } from '../platform/require.js';
import { cleanupDomains, defineDomain, domainXml, libvirtUnavailable, uniqueName, virsh, LIBVIRT_URI } from '../platform/libvirt.js';

const run = promisify(execFile);
const unavailable = await libvirtUnavailable();

if (unavailable !== null) {
  describe('libvirt live', () => platformUnavailable('needs a running libvirtd', unavailable));
} else {
  describe('libvirt live [sqlite]', () => {
    let s: TestServer & { cleanup(): Promise<void> };
    const domains = new Set<string>();
    /** The virsh commands the server ran. */
    const virshRuns: string[][] = [];
    const base = new NodeCommandRunner();

    beforeAll(async () => {
      s = await withServer('sqlite', {
        runner: { run: (argv, o) => (argv[0] === 'virsh' && virshRuns.push([...argv]), base.run(argv, o)), pipe: base.pipe.bind(base) },
        hypervisor: { kind: 'libvirt', uri: LIBVIRT_URI, dc: null },
        storages: (root) => [
          { name: 'default', driver: 'file', root: join(root, 'files') },
          { name: 'images', driver: 'qcow2', root: join(root, 'images') },
        ],
      });
    });
    afterAll(async () => {
      await cleanupDomains(domains);
      await s?.cleanup();
    });

    const status = async (name: string): Promise<string | null> => {
      const r = await s.req('GET', `/api/vm/${name}/status`);
      return r.status === 200 ? (r.body.result.status as string) : null;
    };

    it('snapshots a running domain live, refuses a rollback while it runs and allows it after a destroy', async () => {
      const name = uniqueName('lv-live');
      const q = join(s.storageRoot, 'images', `${name}.qcow2`);
      const r = join(s.storageRoot, 'files', `${name}.img`);
      await mkdir(join(s.storageRoot, 'images'), { recursive: true });
      await mkdir(join(s.storageRoot, 'files'), { recursive: true });
      // libvirt runs QEMU as its own user, which must reach the images (temp folders are 0700).
      await chmod(s.storageRoot, 0o755);
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', q, '16M']);
      await writeFile(r, Buffer.alloc(4 * 1024 * 1024, 1));
      const uuid = await defineDomain(domainXml(name, { disks: [{ target: 'vda', source: q, format: 'qcow2' }, { target: 'vdb', source: r, format: 'raw' }] }));
      domains.add(uuid);
      await waitFor('the domain', async () => (await status(name)) === 'stopped');
      await virsh('start', uuid);
      await waitFor('the running state', async () => (await status(name)) === 'running');

      // libvirt owns the domain's monitor and agent: esnap's socket fields stay unset.
      const put = await s.req('PUT', `/api/vm/${name}/define`, { body: { qmp_socket: '/tmp/elsewhere.qmp' } });
      expect(put.status).toBe(403);

      const live = await s.stream('POST', `/api/vm/${name}/snapshot/q1`, { body: { disk_id: 1 } });
      expect(live.finalStatus, JSON.stringify(live.final)).toBe(200);
      // QEMU itself made it: its own view of the open image lists the snapshot.
      const blocks = JSON.parse(await virsh('qemu-monitor-command', uuid, '{"execute":"query-block"}')) as {
        return: Array<{ inserted?: { file?: string; image?: { snapshots?: Array<{ name: string }> } } }>;
      };
      const qBlock = blocks.return.find((b) => b.inserted?.file === q);
      expect(qBlock?.inserted?.image?.snapshots?.map((x) => x.name)).toEqual([expect.stringMatching(/^es-\d+$/)]);
      // The next one knows the device: one virsh run (the snapshot, then query-block to check the device).
      const before = virshRuns.length;
      const second = await s.stream('POST', `/api/vm/${name}/snapshot/q2`, { body: { disk_id: 1 } });
      expect(second.finalStatus, JSON.stringify(second.final)).toBe(200);
      expect(virshRuns.slice(before).filter((a) => a.some((x) => x.includes('qemu-monitor-command')))).toHaveLength(1);
      const after = JSON.parse(await virsh('qemu-monitor-command', uuid, '{"execute":"query-block"}')) as typeof blocks;
      expect(after.return.find((b) => b.inserted?.file === q)?.inserted?.image?.snapshots?.map((x) => x.name)).toHaveLength(2);
      expect((await s.stream('DELETE', `/api/vm/${name}/snapshot/q2`, { body: { disk_id: 1 } })).finalStatus).toBe(200);
      const rawSnap = await s.stream('POST', `/api/vm/${name}/snapshot/r1`, { body: { disk_id: 2 } });
      expect(rawSnap.finalStatus, JSON.stringify(rawSnap.final)).toBe(200);
      // fsfreeze on a domain without a guest-agent channel: taken, unfrozen, and said so.
      const noAgent = await s.stream('POST', `/api/vm/${name}/snapshot/f1`, { body: { disk_id: 2, fsfreeze: true } });
      expect(noAgent.final).toMatchObject({ status: 'SUCCESS', result: { returncode: 0, message: 'Snapshot successfully created (filesystem freeze failed)' } });
      expect((noAgent.final as { result: { detail: string } }).result.detail).toMatch(/Filesystem freeze failed \(.*guest agent.*\)/);
      const f1 = await s.req('GET', `/api/vm/${name}/snapshot/f1`, { query: { disk_id: '2' } });
      expect(f1.body.result.fsfreeze).toBe(false);
      await s.stream('DELETE', `/api/vm/${name}/snapshot/f1`, { body: { disk_id: 2 } });

      const refused = await s.req('PUT', `/api/vm/${name}/snapshot/q1`, { body: { disk_id: 1 } });
      expect(refused.status).toBe(423);
      expect(refused.body.detail).toBe('VM is not stopped');

      // A stale record (stopped) does not fool the agent: it checks again right before writing.
      await s.runtime.ctx.db.updateTable('vm').set({ status: 1 }).where('uuid', '=', uuid).execute();
      const stale = await s.stream('PUT', `/api/vm/${name}/snapshot/r1`, { body: { disk_id: 2 } });
      expect(stale.final).toMatchObject({ status: 'FAILURE', result: { message: 'VM is not stopped' } });
      expect((await virsh('domstate', uuid)).trim()).toBe('running');
      const snaps = await s.req('GET', `/api/vm/${name}/snapshot`, { query: { full: 'true', disk_id: '2' } });
      expect(snaps.body.result.map((x: { name: string; status: number }) => [x.name, x.status])).toEqual([['r1', 1]]); // 1: ok

      await virsh('destroy', uuid);
      await waitFor('the stopped state', async () => (await status(name)) === 'stopped');
      const back = await s.stream('PUT', `/api/vm/${name}/snapshot/q1`, { body: { disk_id: 1 } });
      expect(back.finalStatus, JSON.stringify(back.final)).toBe(200);
      const backRaw = await s.stream('PUT', `/api/vm/${name}/snapshot/r1`, { body: { disk_id: 2 } });
      expect(backRaw.finalStatus, JSON.stringify(backRaw.final)).toBe(200);
    }, 120_000);

    it('start and stop are node tasks: 201 PENDING, a graceful stop that times out, a forced one that works', async () => {
      const name = uniqueName('lv-power');
      const uuid = await defineDomain(domainXml(name));
      domains.add(uuid);
      await waitFor('the domain', async () => (await status(name)) === 'stopped');

      const pending = await s.req('PUT', `/api/vm/${name}/status/start`);
      expect(pending.status).toBe(201);
      expect(pending.body).toMatchObject({ status: 'PENDING', task_id: expect.any(String) });
      await waitFor('the start', async () => ((await virsh('domstate', uuid)).trim() === 'running' ? true : null));
      await waitFor('the running status', async () => (await status(name)) === 'running');

      expect((await s.req('PUT', `/api/vm/${name}/status/stop`, { body: { timeout: 0 } })).status).toBe(400);
      // No OS answers the ACPI request: the graceful stop gives up after `timeout` seconds.
      const graceful = await s.stream('PUT', `/api/vm/${name}/status/stop`, { body: { timeout: 2 } });
      expect(graceful.final).toMatchObject({ status: 'FAILURE', result: { message: 'VM did not stop within 2 s' } });
      expect((await virsh('domstate', uuid)).trim()).toBe('running');
      const forced = await s.stream('PUT', `/api/vm/${name}/status/stop`, { body: { force: true } });
      expect(forced.finalStatus, JSON.stringify(forced.final)).toBe(200);
      expect((await virsh('domstate', uuid)).trim()).toBe('shut off');
      // An inventory read during the graceful stop ('in shutdown') may land after the task's own
      // record; the destroy's event brings the final state.
      await waitFor('the stopped status', async () => (await status(name)) === 'stopped');
    }, 120_000);
  });
}
