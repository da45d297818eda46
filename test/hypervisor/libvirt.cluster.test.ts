/**
 * Cluster mode (issue 14): a real `esnap agent` process with ESNAP_HYPERVISOR=libvirt against
 * PostgreSQL discovers its node's domains like the embedded agent, sending its inventories through
 * pg-boss to the server, which applies them (the agent never reads esnap's tables). The server
 * answers each inventory with the node's skipped domains, which the agent's own /readyz counts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeNodeVm, newClusterDb, spawnAgent, startClusterServer, waitFor, waitNodeOnline, type ChildAgent, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';
import { waitOutput } from '../helpers/esnap-process.js';
import { platformUnavailable } from '../platform/require.js';
import { cleanupDomains, defineDomain, domainXml, libvirtUnavailable, uniqueName, virsh, LIBVIRT_URI } from '../platform/libvirt.js';

const unavailable = await libvirtUnavailable();

if (unavailable !== null) {
  describe('libvirt cluster', () => platformUnavailable('needs a running libvirtd', unavailable));
} else {
  describe('libvirt discovery by `esnap agent` [postgres]', () => {
    let db: ClusterDb;
    let server: ClusterServer;
    let agent: ChildAgent | undefined;
    let dir: string;
    const domains = new Set<string>();

    beforeAll(async () => {
      db = await newClusterDb();
      dir = await mkdtemp(join(tmpdir(), 'esnap-libvirt-cluster-'));
      server = await startClusterServer(db);
    }, 60_000);
    afterAll(async () => {
      await agent?.kill('SIGTERM');
      await cleanupDomains(domains);
      await server?.close().catch(() => undefined);
      await db?.drop().catch(() => undefined);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    const vmOf = async (name: string): Promise<Record<string, unknown> | null> => {
      const r = await server.req('GET', `/api/vm/${name}/define`);
      return r.status === 200 ? (r.body.result as Record<string, unknown>) : null;
    };

    it('the agent discovers domains defined before and after its start, and follows an undefine', async () => {
      const root = join(dir, 'storage');
      const before = uniqueName('lvc-a');
      const after = uniqueName('lvc-b');
      const beforeUuid = await defineDomain(domainXml(before, { title: 'early' }));
      domains.add(beforeUuid);
      agent = await spawnAgent(
        db,
        { node: 'lvnode', root },
        { env: { ESNAP_HYPERVISOR: 'libvirt', ESNAP_LIBVIRT_URI: LIBVIRT_URI, ESNAP_AGENT_HEALTH_LISTEN: '127.0.0.1:0' } },
      );
      await waitNodeOnline(server, 'lvnode');
      const first = await waitFor('the early domain', () => vmOf(before));
      expect(first).toMatchObject({ hostname: before, uuid: beforeUuid, alias: 'early', node: 'lvnode', owner: 'admin', status: 'stopped' });

      const image = join(root, `${after}.img`);
      await writeFile(image, Buffer.alloc(1024 * 1024));
      const afterUuid = await defineDomain(domainXml(after, { disks: [{ target: 'vda', source: image, format: 'raw' }] }));
      domains.add(afterUuid);
      await waitFor('the later domain', () => vmOf(after));
      const disks = await server.req('GET', `/api/vm/${after}/define/disk`);
      expect(disks.body.result).toEqual([{ disk_id: 1, zpool: 'default', path: `${after}.img`, size: 1, target: 'vda', detached: false, reason: null }]);

      await virsh('undefine', beforeUuid);
      await waitFor('the undefine', async () => ((await vmOf(before))?.['status'] === 'notcreated' ? true : null));
    }, 120_000);

    /** The `libvirt` check of the agent's own /readyz (port 0: the agent logs the port it took). */
    const agentLibvirtCheck = async (): Promise<{ status: number; body: string; check: Record<string, unknown> | undefined }> => {
      await waitOutput(agent!, 'agent health checks listening');
      const line = agent!.output().split('\n').find((l) => l.includes('agent health checks listening'))!;
      const port = (JSON.parse(line) as { address: { port: number } }).address.port;
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      const body = await r.text();
      const parsed = JSON.parse(body) as { checks: Record<string, Record<string, unknown>> };
      return { status: r.status, body, check: parsed.checks['libvirt'] };
    };

    it("the agent's /readyz counts its node's domains skipped for a name conflict, until renamed or undefined", async () => {
      expect(agent, 'the agent of the first test').toBeDefined();
      const taken1 = uniqueName('lvc-t1');
      const taken2 = uniqueName('lvc-t2');
      await makeNodeVm(server, 'lvnode', taken1);
      await makeNodeVm(server, 'lvnode', taken2);
      const uuid1 = await defineDomain(domainXml(taken1));
      domains.add(uuid1);
      const uuid2 = await defineDomain(domainXml(taken2));
      domains.add(uuid2);
      const REASON = 'name is already the hostname of another VM';
      const skipped = await waitFor('the skips in the agent /readyz', async () => {
        const r = await agentLibvirtCheck();
        return typeof r.check?.['skipped'] === 'string' && (r.check['skipped'] as string).includes(`${REASON} (2)`) ? r : null;
      });
      // Counted by reason, the agent stays ready, and /readyz names neither domain.
      expect(skipped.status).toBe(200);
      expect(skipped.check).toMatchObject({ ok: true });
      expect(skipped.check?.['skipped_domains']).toBeGreaterThanOrEqual(2);
      expect(skipped.body).not.toContain(taken1);
      expect(skipped.body).not.toContain(taken2);
      expect(skipped.body).not.toContain(uuid1);
      // The agent's log names them.
      await waitOutput(agent!, taken1);
      expect(agent!.output().split('\n').some((l) => l.includes('libvirt domain skipped') && l.includes(uuid1))).toBe(true);

      // One conflict resolved by a rename (the domain then appears), the other by an undefine.
      const freed = uniqueName('lvc-free');
      await virsh('domrename', uuid1, freed);
      await waitFor('the renamed domain', () => vmOf(freed));
      const one = await waitFor('one skip left', async () => {
        const r = await agentLibvirtCheck();
        return (r.check?.['skipped'] as string | undefined)?.includes(`${REASON} (1)`) ? r : null;
      });
      expect(one.body).not.toContain(taken2);
      await virsh('undefine', uuid2);
      domains.delete(uuid2);
      const cleared = await waitFor('no skip left', async () => {
        const r = await agentLibvirtCheck();
        return r.check !== undefined && !(r.check['skipped'] as string).includes(REASON) ? r : null;
      });
      expect(cleared.status).toBe(200);
      expect(cleared.check).toMatchObject({ ok: true });
    }, 120_000);
  });
}
