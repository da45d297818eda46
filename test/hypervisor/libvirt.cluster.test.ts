/**
 * Cluster mode (issue 14): a real `esnap agent` process with ESNAP_HYPERVISOR=libvirt against
 * PostgreSQL discovers its node's domains like the embedded agent, sending its inventories through
 * pg-boss to the server, which applies them (the agent never reads esnap's tables).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newClusterDb, spawnAgent, startClusterServer, waitFor, waitNodeOnline, type ChildAgent, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';
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
      agent = await spawnAgent(db, { node: 'lvnode', root }, { env: { ESNAP_HYPERVISOR: 'libvirt', ESNAP_LIBVIRT_URI: LIBVIRT_URI } });
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
  });
}
