/**
 * The overview's aggregate endpoints (esnap additions) on both databases: problems after a night
 * with a failing definition, a stale one, a lost snapshot, a full storage and an unreachable node;
 * the per-VM summary and its protection states; nodes with the floor and snapshot bytes by day;
 * a VM's timeline with skipped slots; scope (own VMs only for non-admins), credentials, OpenAPI.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm } from '../helpers/fixtures.js';

const HOUR = 3_600_000;

forEachDb('overview endpoints', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let user: { id: number; key: string };

  beforeAll(async () => {
    s = await withServer(kind);
    const db = s.runtime.ctx.db;
    user = await makeUser(s, 'olga');
    await makeVm(s, 'good01', { disks: [1, 1] });
    await makeVm(s, 'fail01');
    await makeVm(s, 'stale01');
    await makeVm(s, 'bare01');
    await makeVm(s, 'olga01', { ownerId: user.id });
    const define = async (vm: string, name: string, schedule: string, disk = 1): Promise<void> => {
      expect((await s.req('POST', `/api/vm/${vm}/define/snapshot/${name}/`, { body: { schedule, retention: 3, disk_id: disk } })).status).toBe(201);
    };
    await define('good01', 'daily', '0 * * * *');
    await define('good01', 'second', '0 * * * *', 2);
    await define('fail01', 'hourly', '0 * * * *');
    await define('stale01', 'hourly', '0 * * * *');
    await define('olga01', 'hourly', '0 * * * *');
    const old = new Date(Date.now() - 5 * HOUR).toISOString();
    const recent = new Date(Date.now() - 60_000).toISOString();
    await db.updateTable('snapshot_define').set({ created: old, last_success: recent }).execute();
    await db.updateTable('snapshot_define').set({ last_error: 'Got bad return code (1)' }).where('name', '=', 'hourly').where('vm_uuid', '=', db.selectFrom('vm').select('uuid').where('hostname', '=', 'fail01')).execute();
    await db.updateTable('snapshot_define').set({ last_success: old }).where('vm_uuid', 'in', db.selectFrom('vm').select('uuid').where('hostname', 'in', ['stale01', 'olga01'])).execute();
    // Two snapshots of good01 (one lost), one of bare01.
    for (const [vm, name] of [['good01', 'a'], ['good01', 'b'], ['bare01', 'c']] as const) {
      expect((await s.stream('POST', `/api/vm/${vm}/snapshot/${name}/`, { body: { disk_id: 1 } })).finalStatus).toBe(200);
    }
    await db.updateTable('snapshot').set({ status: 4 }).where('name', '=', 'b').execute();
    await db.updateTable('snapshot').set({ size: 1000 }).where('name', '=', 'a').execute();
    await db.updateTable('node_storage').set({ size: 1000_000, size_free: 10_000 }).execute();
    await db.insertInto('node').values({ hostname: 'down.test', uuid: '00000000-0000-4000-8000-00000000d0d0', status: 3, last_heartbeat: old, created: old }).execute();
    // Backups (issue 15's tables): fail01's backup definition failed; good01 has a lost and two damaged backups.
    const local = await db.selectFrom('node').select('id').where('hostname', '=', s.node).executeTakeFirstOrThrow();
    const storage = await db.selectFrom('node_storage').select(['id', 'name']).where('node_id', '=', local.id).executeTakeFirstOrThrow();
    const uuidOf = async (h: string): Promise<string> => (await db.selectFrom('vm').select('uuid').where('hostname', '=', h).executeTakeFirstOrThrow()).uuid;
    for (const [vm, error] of [['fail01', 'rsync: connection refused'], ['good01', null]] as const) {
      await db.insertInto('backup_define').values({
        vm_uuid: await uuidOf(vm), disk_real_id: 0, name: 'nightly', type: 2, node_id: local.id, storage_id: storage.id, desc: '', bwlimit: null, schedule: '0 1 * * *', retention: 7,
        active: 1, compression: 0, fsfreeze: 0, tz: 'UTC', next_run: null, last_run: recent, last_success: error ? null : recent, last_error: error, created: old, changed: recent,
      }).execute();
    }
    for (const [name, status] of [['nightly-1', 4], ['nightly-2', 5], ['nightly-3', 5], ['nightly-4', 1]] as const) {
      await db.insertInto('backup').values({
        dc_id: 1, vm_uuid: await uuidOf('good01'), vm_hostname: 'good01', vm_disk_id: 1, disk_real_id: 0, disk_size_mb: 1, define_id: null, name, status, type: 2, node_id: local.id,
        node_hostname: s.node, storage_id: storage.id, storage_name: storage.name, storage_driver: 'file', source_node_hostname: s.node, source_storage_name: storage.name,
        source_storage_driver: 'file', file_path: `/backups/${name}`, restic_id: null, base_snapshot: null, checksum: 'sha256:00', size: 1, time: 1, note: '', last: 0, fsfreeze: 0,
        task_id: null, status_change: recent, created: recent, changed: recent,
      }).execute();
    }
    const def = await db.selectFrom('snapshot_define').select('id').where('vm_uuid', '=', db.selectFrom('vm').select('uuid').where('hostname', '=', 'stale01')).executeTakeFirstOrThrow();
    await db.insertInto('schedule_slot').values({ define_id: def.id, slot: new Date(Date.now() - HOUR).toISOString(), source: 'cron', state: 'skipped', reason: 'capacity', created: recent, changed: recent }).execute();
  });
  afterAll(() => s?.cleanup());

  it('lists the problems, worst first, each naming where to act', async () => {
    const r = await s.req('GET', '/api/overview/problems/');
    expect(r.status).toBe(200);
    const list = r.body.result as { kind: string; vm?: string; define?: string; node?: string; storage?: string; count?: number; message: string; severity: string }[];
    const kinds = list.map((p) => `${p.kind}:${p.vm ?? p.node ?? ''}${p.storage ? `/${p.storage}` : ''}`).sort();
    expect(kinds).toEqual(
      [
        'definition_failing:fail01', 'definition_stale:stale01', 'definition_stale:olga01', 'node_unreachable:down.test', 'snapshot_lost:good01', `storage_low:${s.node}/default`,
        'backup_failing:fail01', 'backup_lost:good01', 'backup_damaged:good01',
      ].sort(),
    );
    expect(list.find((p) => p.kind === 'backup_failing')!.message).toBe('Backup definition nightly of fail01 (disk 1) failed: rsync: connection refused');
    expect(list.find((p) => p.kind === 'backup_lost')).toMatchObject({ count: 1, message: '1 backup of good01 lost (gone from the backup storage)' });
    expect(list.find((p) => p.kind === 'backup_damaged')).toMatchObject({ count: 2, message: '2 backups of good01 damaged (their data no longer matches their checksum)' });
    expect(list.find((p) => p.kind === 'definition_failing')!.message).toContain('Got bad return code (1)');
    expect(list.find((p) => p.kind === 'snapshot_lost')).toMatchObject({ count: 1, message: '1 snapshot of good01 lost (gone from storage)' });
    expect(list.find((p) => p.kind === 'storage_low')!.message).toContain('1.0 % free, below the 5 % floor');
  });

  it('summarises every VM with its protection state', async () => {
    const r = await s.req('GET', '/api/overview/vm/');
    expect(r.status).toBe(200);
    const byName = new Map((r.body.result as { hostname: string }[]).map((v) => [v.hostname, v as Record<string, unknown>]));
    expect([...byName.keys()]).toEqual(['bare01', 'fail01', 'good01', 'olga01', 'stale01']);
    expect(byName.get('good01')).toMatchObject({ alias: 'good01', status: 'stopped', snapshots: 2, snapshots_lost: 1, protection: 'ok', disks: [{ disk_id: 1, size: 1 }, { disk_id: 2, size: 1 }] });
    expect(Number(byName.get('good01')!['snapshots_size'])).toBeGreaterThanOrEqual(1000);
    expect((byName.get('good01')!['definitions'] as { name: string; disk_id: number; state: string }[]).map((d) => `${d.name}@${d.disk_id}:${d.state}`)).toEqual(['daily@1:ok', 'second@2:ok']);
    expect(byName.get('fail01')).toMatchObject({ protection: 'failing' });
    expect(byName.get('stale01')).toMatchObject({ protection: 'stale' });
    expect(byName.get('bare01')).toMatchObject({ protection: 'none', snapshots: 1, definitions: [] });
  });

  it('scopes VMs to the caller: a user sees their own VM and its problems only', async () => {
    const vms = await s.req('GET', '/api/overview/vm/', { key: user.key });
    expect((vms.body.result as { hostname: string }[]).map((v) => v.hostname)).toEqual(['olga01']);
    const problems = (await s.req('GET', '/api/overview/problems/', { key: user.key })).body.result as { kind: string; vm?: string }[];
    expect(problems.filter((p) => p.vm !== undefined).map((p) => p.vm)).toEqual(['olga01']);
    expect((await s.req('GET', '/api/overview/vm/stale01/timeline/', { key: user.key })).status).toBe(404);
  });

  it('shows nodes with storage size, free space, the floor and snapshot bytes by day', async () => {
    const r = await s.req('GET', '/api/overview/node/', { query: { days: '3' } });
    expect(r.status).toBe(200);
    expect(r.body.result.min_free_percent).toBe(5);
    const local = (r.body.result.nodes as { hostname: string; storages: Record<string, unknown>[] }[]).find((n) => n.hostname === s.node)!;
    expect(local.storages[0]).toMatchObject({ name: 'default', driver: 'file', size: 1000_000, size_free: 10_000, free_percent: 1, below_floor: true });
    const series = local.storages[0]!['snapshot_bytes'] as { day: string; bytes: number }[];
    expect(series).toHaveLength(3);
    expect(series[2]!.day).toBe(new Date().toISOString().slice(0, 10));
    expect(series[2]!.bytes).toBeGreaterThanOrEqual(1000);
    expect((await s.req('GET', '/api/overview/node/', { query: { days: '0' } })).status).toBe(400);
  });

  it('gives a VM’s timeline: snapshots per disk and definition and its skipped slots', async () => {
    const r = await s.req('GET', '/api/overview/vm/stale01/timeline/');
    expect(r.status).toBe(200);
    expect(r.body.result.runs).toEqual([expect.objectContaining({ define: 'hourly', disk_id: 1, state: 'skipped', reason: 'capacity' })]);
    const g = await s.req('GET', '/api/overview/vm/good01/timeline/');
    expect((g.body.result.snapshots as { name: string; status: number; disk_id: number }[]).map((x) => `${x.name}@${x.disk_id}:${x.status}`)).toEqual(['a@1:1', 'b@1:4']);
    expect((g.body.result.backups as { name: string; status: number; disk_id: number; define: string | null }[]).map((x) => `${x.name}@${x.disk_id}:${x.status}`).sort()).toEqual(['nightly-1@1:4', 'nightly-2@1:5', 'nightly-3@1:5', 'nightly-4@1:1']);
    expect((await s.req('GET', '/api/overview/vm/nope/timeline/')).status).toBe(404);
  });

  it('answers all three in one request, the same as the three', async () => {
    const all = await s.req('GET', '/api/overview/');
    expect(all.status).toBe(200);
    expect(all.body.result.problems).toEqual((await s.req('GET', '/api/overview/problems/')).body.result);
    expect(all.body.result.vms).toEqual((await s.req('GET', '/api/overview/vm/')).body.result);
    expect(all.body.result.nodes).toEqual((await s.req('GET', '/api/overview/node/')).body.result);
    expect((await s.req('GET', '/api/overview/', { key: user.key })).body.result.vms.map((v: { hostname: string }) => v.hostname)).toEqual(['olga01']);
  });

  it('pages the VM list on the server: attention filter, offset and limit, the count of the whole list', async () => {
    const page = await s.req('GET', '/api/overview/', { query: { days: '0', limit: '2', offset: '1' } });
    expect(page.status).toBe(200);
    expect(page.body.result.vms.map((v: { hostname: string }) => v.hostname)).toEqual(['fail01', 'good01']);
    expect(page.body.result.vm_count).toBe(5);
    expect(page.body.result.vms[1]).toMatchObject({ snapshots: 2, snapshots_lost: 1 });
    // days=0 leaves the history out; the problems are the whole DC's whatever the page.
    expect(page.body.result.nodes.nodes.find((n: { hostname: string }) => n.hostname === s.node).storages[0].snapshot_bytes).toEqual([]);
    expect(page.body.result.problems).toEqual((await s.req('GET', '/api/overview/problems/')).body.result);
    // Attention: all but a VM on schedule without lost snapshots (good01 once its lost one is found again).
    const names = (r: { body: { result: { vms: { hostname: string }[]; vm_count: number } } }) => r.body.result.vms.map((v) => v.hostname);
    expect(names(await s.req('GET', '/api/overview/', { query: { attention: 'true' } }))).toEqual(['bare01', 'fail01', 'good01', 'olga01', 'stale01']);
    await s.runtime.ctx.db.updateTable('snapshot').set({ status: 1 }).where('name', '=', 'b').execute();
    try {
      const attention = await s.req('GET', '/api/overview/', { query: { attention: 'true', limit: '100' } });
      expect(names(attention)).toEqual(['bare01', 'fail01', 'olga01', 'stale01']);
      expect(attention.body.result.vm_count).toBe(4);
      expect((await s.req('GET', '/api/overview/vm/', { query: { attention: '1', offset: '2' } })).body.result.map((v: { hostname: string }) => v.hostname)).toEqual(['olga01', 'stale01']);
    } finally {
      await s.runtime.ctx.db.updateTable('snapshot').set({ status: 4 }).where('name', '=', 'b').execute();
    }
    for (const [field, value] of [['limit', '0'], ['offset', '-1'], ['limit', 'x']] as const) {
      const r = await s.req('GET', '/api/overview/', { query: { [field]: value } });
      expect(r.status, `${field}=${value}`).toBe(400);
      expect(Object.keys(r.body.result ?? r.body.detail ?? {})).toContain(field);
    }
    expect((await s.req('GET', '/api/overview/node/', { query: { days: '0' } })).status).toBe(400);
  });

  it('lists every backup of the DC, newest first: admins also those of deleted VMs, users their own VMs\' only', async () => {
    const db = s.runtime.ctx.db;
    const base = await db.selectFrom('backup').selectAll().where('name', '=', 'nightly-4').executeTakeFirstOrThrow();
    const { id: _id, ...row } = base;
    const olga = await db.selectFrom('vm').select('uuid').where('hostname', '=', 'olga01').executeTakeFirstOrThrow();
    await db.insertInto('backup').values({ ...row, name: 'gone-1', vm_uuid: null, vm_hostname: 'gone01' }).execute();
    await db.insertInto('backup').values({ ...row, name: 'olga-1', vm_uuid: olga.uuid, vm_hostname: 'olga01', note: 'mine' }).execute();
    const all = await s.req('GET', '/api/overview/backup/');
    expect(all.status).toBe(200);
    const list = all.body.result as { hostname: string; vm: string | null; name: string; status: number; node: string | null; zpool: string; note: string }[];
    expect(list.map((b) => `${b.hostname}/${b.name}:${b.status}`)).toEqual(['olga01/olga-1:1', 'gone01/gone-1:1', 'good01/nightly-4:1', 'good01/nightly-3:5', 'good01/nightly-2:5', 'good01/nightly-1:4']);
    expect(list[1]).toMatchObject({ vm: null, node: s.node });
    // The same objects as a VM's own list.
    expect(list.filter((b) => b.hostname === 'good01')).toEqual((await s.req('GET', '/api/vm/good01/backup/', { query: { full: 'true' } })).body.result);
    const mine = (await s.req('GET', '/api/overview/backup/', { key: user.key })).body.result as { name: string; node: string | null }[];
    expect(mine).toEqual([expect.objectContaining({ name: 'olga-1', node: null, note: 'mine' })]);
    await db.deleteFrom('backup').where('name', 'in', ['gone-1', 'olga-1']).execute();
  });

  it('needs credentials and is described in the OpenAPI document', async () => {
    for (const p of ['/api/overview/', '/api/overview/problems/', '/api/overview/vm/', '/api/overview/node/', '/api/overview/vm/good01/timeline/', '/api/overview/backup/']) {
      expect((await s.req('GET', p, { key: null })).status).toBe(403);
    }
    const doc = (await s.req('GET', '/api/openapi.json')).body as { paths: Record<string, unknown> };
    for (const p of ['/api/overview/', '/api/overview/problems/', '/api/overview/vm/', '/api/overview/node/', '/api/overview/vm/{hostname_or_uuid}/timeline/', '/api/overview/backup/', '/api/dc/{dcPrefix}/overview/problems/']) {
      expect(doc.paths[p], p).toBeDefined();
    }
  });
});
