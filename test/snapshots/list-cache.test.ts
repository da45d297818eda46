/**
 * The PostgreSQL list cache (src/snapshots/snapshot.list-cache.ts): a repeated list is answered
 * from the cache (the statement built no JSON), and every kind of committed write the answer
 * depends on, made by another connection (as another esnap process would), shows in the very next
 * answer: a snapshot's note, an added and a deleted snapshot, a definition's new name, the VM's
 * new hostname, a disk removed (the disk ids move). Each answer of the cached path is compared
 * with the general path's (two sort fields: not the one-statement path, never cached).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startTestServer, testDatabases, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { listCache } from '../../src/snapshots/snapshot.list-json.js';

describe.runIf(testDatabases().includes('postgres'))('snapshot list cache [postgres]', () => {
  let s: TestServer & { dbInfo: { databaseUrl: string; searchPath?: string }; destroy(): Promise<void> };
  let other: pg.Client;
  let vm: VmFixture;
  let defineId: number;

  beforeAll(async () => {
    s = (await startTestServer('postgres')) as unknown as typeof s;
    other = new pg.Client({ connectionString: s.dbInfo.databaseUrl, options: `-c search_path=${s.dbInfo.searchPath}` });
    await other.connect();
    vm = await makeVm(s, 'cache01', { disks: [1, 1] });
    expect((await s.req('POST', `/api/vm/${vm.hostname}/define/snapshot/daily/`, { body: { schedule: '0 1 * * *', retention: 3 } })).status).toBe(201);
    defineId = (await other.query<{ id: number }>('SELECT id FROM snapshot_define')).rows[0]!.id;
    for (const [name, disk, def] of [['a', 0, null], ['b', 1, defineId], ['c', 1, null]] as const) await insertSnapshot(name, disk, def);
  });
  afterAll(async () => {
    await other?.end();
    await s?.close();
    await s?.destroy();
  });

  async function insertSnapshot(name: string, disk: number, define: number | null): Promise<void> {
    const storage = (await other.query<{ id: number }>('SELECT id FROM node_storage ORDER BY id LIMIT 1')).rows[0]!.id;
    await other.query(
      `INSERT INTO snapshot (vm_uuid, define_id, name, type, status, storage_id, size, note, fsfreeze, pinned, disk_real_id, status_change, created, changed)
       VALUES ($1, $2, $3, $4, 1, $5, 1, $6, 0, 0, $7, NULL, '2026-03-04T05:06:07.123Z', '2026-03-04T05:06:07.123Z')`,
      [vm.uuid, define, name, define === null ? 2 : 1, storage, `n-${name}`, disk],
    );
  }

  /** The cached path's answer (checked against the general path's) and whether it came from the cache. */
  async function list(path = vm.hostname): Promise<{ result: Array<Record<string, unknown>>; hit: boolean }> {
    const hits = listCache.hits;
    const r = await s.req('GET', `/api/vm/${path}/snapshot/`, { query: { full: 'true' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const hit = listCache.hits > hits;
    const general = await s.req('GET', `/api/vm/${path}/snapshot/`, { query: { full: 'true', order_by: '-created,name' } });
    expect(general.status).toBe(200);
    expect(r.body.result).toEqual(general.body.result);
    return { result: r.body.result, hit };
  }

  const byName = (rows: Array<Record<string, unknown>>) => Object.fromEntries(rows.map((r) => [r['name'], r]));

  it('answers a repeated list from the cache, and sees every committed write of another connection at once', async () => {
    const first = await list();
    expect(first.result.map((r) => r['name'])).toEqual(['c', 'b', 'a']);
    const again = await list();
    expect(again.hit).toBe(true);
    expect(again.result).toEqual(first.result);

    await other.query("UPDATE snapshot SET note = 'changed' WHERE name = 'b'");
    let now = await list();
    expect(now.hit).toBe(false);
    expect(byName(now.result)['b']!['note']).toBe('changed');
    expect((await list()).hit).toBe(true);

    await insertSnapshot('d', 0, null);
    now = await list();
    expect(now.hit).toBe(false);
    expect(now.result.map((r) => r['name'])).toEqual(['d', 'c', 'b', 'a']);

    await other.query("DELETE FROM snapshot WHERE name = 'c'");
    now = await list();
    expect(now.hit).toBe(false);
    expect(now.result.map((r) => r['name'])).toEqual(['d', 'b', 'a']);

    await other.query("UPDATE snapshot_define SET name = 'nightly' WHERE id = $1", [defineId]);
    now = await list();
    expect(now.hit).toBe(false);
    expect(byName(now.result)['b']!['define']).toBe('nightly');

    await other.query("UPDATE vm SET hostname = 'cache02' WHERE uuid = $1", [vm.uuid]);
    now = await list(vm.uuid);
    expect(now.hit).toBe(false);
    expect(now.result.every((r) => r['hostname'] === 'cache02')).toBe(true);
    expect((await list(vm.uuid)).hit).toBe(true);

    // The first disk goes: the second becomes disk 1, and the first disk's snapshots show disk 0.
    await other.query('DELETE FROM vm_disk WHERE vm_uuid = $1 AND real_id = 0', [vm.uuid]);
    now = await list(vm.uuid);
    expect(now.hit).toBe(false);
    expect(Object.fromEntries(now.result.map((r) => [r['name'], r['disk_id']]))).toEqual({ d: 0, b: 1, a: 0 });

    // A write not yet committed is not seen; once committed, it is.
    await other.query('BEGIN');
    await other.query("UPDATE snapshot SET note = 'in flight' WHERE name = 'a'");
    now = await list(vm.uuid);
    expect(byName(now.result)['a']!['note']).toBe('n-a');
    await other.query('COMMIT');
    now = await list(vm.uuid);
    expect(now.hit).toBe(false);
    expect(byName(now.result)['a']!['note']).toBe('in flight');
  });
});
