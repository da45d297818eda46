/**
 * ESNAP_LIBVIRT_DC (issue 14): discovered VMs land in the DC it names, owned by that DC's owner,
 * not in the default DC; the other discovery tests use the default (main, owner admin). The DC is
 * made by a first server without libvirt, then the same database is served with the hypervisor on,
 * as an operator would do it. One database: nothing here depends on it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../cluster/cluster.helpers.js';
import { makeUser } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cleanupDomains, defineDomain, domainXml, libvirtUnavailable, LIBVIRT_URI, uniqueName } from '../platform/libvirt.js';
import { platformUnavailable } from '../platform/require.js';

const unavailable = await libvirtUnavailable();
type Restartable = TestServer & { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string }; destroy(): Promise<void> };

describe('libvirt discovery into ESNAP_LIBVIRT_DC', () => {
  if (unavailable !== null) {
    platformUnavailable('needs a running libvirtd', unavailable);
    return;
  }
  const domains = new Set<string>();
  const servers: Restartable[] = [];
  afterAll(async () => {
    // The server first: its watcher would read the domain again on the undefine's event.
    for (const s of servers.reverse()) await s.close().catch(() => undefined);
    await cleanupDomains(domains);
    await servers[0]?.destroy();
  });

  it("puts the node's domains in that DC, owned by the DC's owner", async () => {
    const first = (await startTestServer('sqlite')) as Restartable;
    servers.push(first);
    const ownerName = uniqueName('olga');
    const owner = await makeUser(first, ownerName);
    expect((await first.req('POST', '/api/dc/lab/', { body: { owner: ownerName } })).body.result).toMatchObject({ name: 'lab', owner: ownerName });
    await first.close();
    servers.length = 0;

    const s = (await startTestServer('sqlite', { reuse: first.dbInfo, hypervisor: { kind: 'libvirt', uri: LIBVIRT_URI, dc: 'lab' } })) as Restartable;
    servers.push(s);
    const name = uniqueName('lv-lab');
    domains.add(await defineDomain(domainXml(name)));
    const db = s.runtime.ctx.db;
    const row = await waitFor('the domain as a VM', () => db.selectFrom('vm').select(['dc_id', 'owner_id', 'libvirt']).where('hostname', '=', name).executeTakeFirst().then((r) => r ?? null));
    const lab = await db.selectFrom('dc').select('id').where('name', '=', 'lab').executeTakeFirstOrThrow();
    expect(row).toEqual({ dc_id: lab.id, owner_id: owner.id, libvirt: 1 });
    // Through the API: in lab, not in main.
    const inLab = await s.req('GET', `/api/vm/${name}/define`, { query: { dc: 'lab' } });
    expect(inLab.body.result, JSON.stringify(inLab.body)).toMatchObject({ hostname: name, owner: ownerName });
    expect((await s.req('GET', `/api/vm/${name}/define`)).status).toBe(404);
  }, 120_000);
});
