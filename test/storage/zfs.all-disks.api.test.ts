/**
 * disk_id "all" on a real zfs-fuse pool, over the API, on both databases: every disk gets its own
 * snapshot id (es-<row id>) under one name, and the rows succeed or fail together. zfs-fuse takes
 * one snapshot per call, so the agent's plan (src/storage/capabilities.ts) runs the per-disk path
 * here; the one-call path is tested by argv in atomic-snapshots.test.ts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { platformUnavailable } from '../platform/require.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';

const runner = new NodeCommandRunner();

async function zfs(...argv: string[]): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await runner.run(['zfs', ...argv], { env: { LC_ALL: 'C' } });
    if (r.code === 0) return r.stdout;
    // zfs-fuse says "busy" for a moment after a dataset was used.
    if (!/busy/.test(r.stderr) || i > 10) throw new Error(`zfs ${argv.join(' ')}: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

const reason = await zfsUnavailable();
if (reason !== null) {
  platformUnavailable('disk_id "all" on zfs-fuse', reason);
} else {
  forEachDb('disk_id "all" on zfs-fuse', (kind) => {
    let pool: ZfsPool;
    let s: TestServer & { cleanup(): Promise<void> };
    const paths: string[] = [];
    beforeAll(async () => {
      pool = await makeZfsPool(256);
      await zfs('create', `${pool.name}/vms`);
      s = await withServer(kind, { storages: () => [{ name: 'default', driver: 'zfs', dataset: `${pool.name}/vms` }] });
      expect((await s.req('POST', '/api/vm/web01/define/', { body: {} })).status).toBe(201);
      for (const id of [1, 2, 3]) {
        const d = await s.req('POST', `/api/vm/web01/define/disk/${id}/`, { body: { size: 8 } });
        expect(d.status, d.text).toBe(201);
        paths.push(d.body.result.path as string);
      }
    }, 120_000);
    afterAll(async () => {
      await s?.cleanup();
      await pool?.cleanup();
    });

    /** `es:snapname` of every snapshot on the disk, by snapshot id. */
    async function snapshotsOf(path: string): Promise<Record<string, string>> {
      const out = await zfs('get', '-Hp', '-r', '-o', 'name,value', 'es:snapname', `${pool.name}/vms/${path}`);
      return Object.fromEntries(
        out.split('\n').filter((l) => l.includes('@')).map((l) => {
          const [name = '', value = ''] = l.split('\t');
          return [name.slice(name.indexOf('@') + 1), value];
        }),
      );
    }

    it('snapshots every disk under one name, each disk with its own id', async () => {
      const r = await s.stream('POST', '/api/vm/web01/snapshot/everything/', { body: { disk_id: 'all' } });
      expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
      expect(r.final).toMatchObject({ result: { returncode: 0, detail: 'disk_ids=1,2,3' } });
      const rows = [1, 2, 3].map((d) => s.req('GET', '/api/vm/web01/snapshot/everything/', { query: { disk_id: String(d) } }));
      const ids: number[] = [];
      for (const [i, row] of (await Promise.all(rows)).entries()) {
        expect(row.body.result).toMatchObject({ name: 'everything', disk_id: i + 1, status: 1 });
        expect(Number.isSafeInteger(row.body.result.size)).toBe(true);
        ids.push(row.body.result.id as number);
        expect(await snapshotsOf(paths[i]!)).toEqual({ [`es-${row.body.result.id}`]: 'everything' });
      }
      expect(new Set(ids).size).toBe(3);
    }, 60_000);

    it('all or none: a disk missing on the pool fails every row and leaves no snapshot on the others', async () => {
      await zfs('destroy', '-r', `${pool.name}/vms/${paths[1]!}`);
      const r = await s.stream('POST', '/api/vm/web01/snapshot/partial/', { body: { disk_id: 'all' } });
      expect(r.finalStatus).toBe(400);
      expect(r.final).toMatchObject({ status: 'FAILURE', result: { returncode: 1 } });
      for (const d of [1, 2, 3]) {
        expect((await s.req('GET', '/api/vm/web01/snapshot/partial/', { query: { disk_id: String(d) } })).status).toBe(404);
      }
      for (const i of [0, 2]) expect(Object.values(await snapshotsOf(paths[i]!))).toEqual(['everything']);
    }, 60_000);
  });
}
