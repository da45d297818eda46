/**
 * The snapshot list's JSON built by the database (snapshot.list-json.ts) against the objects
 * made in JavaScript (listSnapshots + snapshotObject), on awkward rows: notes with quotes, control
 * characters, non-ASCII and emoji, null and large sizes, created with and without milliseconds
 * and in another shape, a definition name, a disk that is gone, flags set, every filter and order.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { listSnapshots, type Sort, type SortField } from '../../src/snapshots/snapshot.repository.js';
import { snapshotObject } from '../../src/snapshots/snapshot.output.js';
import { vmDisks } from '../../src/vms/vm.lookup.js';

forEachDb('snapshot list as JSON from the database', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let vm: VmFixture;
  beforeAll(async () => {
    s = await withServer(kind);
    vm = await makeVm(s, 'json01', { disks: [1, 1, 1] });
    const odd = await makeVm(s, 'odd01');
    await makeVm(s, 'other01');
    const db = s.runtime.ctx.db;
    const storage = await db.selectFrom('node_storage').select('id').executeTakeFirstOrThrow();
    const def = await db
      .insertInto('snapshot_define')
      .values({
        vm_uuid: vm.uuid, disk_real_id: 1, name: 'daily', desc: '', schedule: '0 1 * * *', retention: 3, active: 1, fsfreeze: 0, tz: 'UTC',
        catchup: 1, retention_days: null, next_run: null, last_run: null, last_success: null, last_error: null,
        created: '2026-01-01T00:00:00.000Z', changed: '2026-01-01T00:00:00.000Z',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const notes = ['plain', 'quote " and \\ backslash', 'line\nbreak\ttab\u0001ctl', 'žluťoučký kůň 😀', '</script>', ''];
    const created = ['2026-03-04T05:06:07.000Z', '2026-03-04T05:06:07.123Z', '2026-03-04T05:06:07.009Z', '2026-03-04T23:59:59.999Z'];
    let i = 0;
    for (const disk of [0, 1, 2, 7]) {
      for (const note of notes) {
        await db
          .insertInto('snapshot')
          .values({
            vm_uuid: vm.uuid, define_id: i % 3 === 0 ? def.id : null, name: `s-${String((i * 7) % 23).padStart(2, '0')}-${i}`, type: i % 3 === 0 ? 1 : 2,
            status: 1 + (i % 4), storage_id: storage.id, size: i % 5 === 0 ? null : i * 9_000_000_000 + 1, note, fsfreeze: i % 2, pinned: (i >> 1) % 2,
            disk_real_id: disk, status_change: null, created: created[i % created.length]!, changed: '2026-03-04T05:06:07.000Z',
          })
          .execute();
        i++;
      }
    }
    await db
      .insertInto('snapshot')
      .values({
        vm_uuid: odd.uuid, define_id: null, name: 'odd', type: 2, status: 1, storage_id: storage.id, size: 1, note: '', fsfreeze: 0, pinned: 0,
        disk_real_id: 0, status_change: null, created: '2026-03-04 05:06:07', changed: '2026-03-04T05:06:07.000Z',
      })
      .execute();
  });
  afterAll(async () => s.cleanup());

  const fields: SortField[] = ['created', 'name', 'disk_id', 'size', 'hostname'];
  const orders: string[] = [...fields.flatMap((f) => [f, `-${f}`]), 'disk_id,-name', '-size,name'];

  it('gives the objects and names listSnapshots + snapshotObject give, for every filter and order', async () => {
    const db = s.runtime.ctx.db;
    const disks = await vmDisks(db, vm.uuid);
    let compared = 0;
    for (const order of orders) {
      const sort: Sort[] = order.split(',').map((f) => ({ field: f.replace('-', '') as SortField, desc: f.startsWith('-') }));
      for (const q of [{}, { disk_id: '2' }, { type: '1' }, { define: 'daily' }, { disk_id: '1', type: '2' }] as Record<string, string>[]) {
        const filter = {
          vmUuid: vm.uuid,
          ...(q['disk_id'] ? { diskRealId: disks[Number(q['disk_id']) - 1]!.real_id } : {}),
          ...(q['type'] ? { type: Number(q['type']) } : {}),
          ...(q['define'] ? { define: q['define'] } : {}),
        };
        const rows = await listSnapshots(db, filter, sort);
        const objects = JSON.parse(JSON.stringify(rows.map((r) => snapshotObject(r, disks))));
        const full = await s.req('GET', '/api/vm/json01/snapshot/', { query: { ...q, full: 'true', order_by: order } });
        expect(full.status).toBe(200);
        const got = full.body.result as { name: string }[];
        // Rows that tie on the sort key come in no defined order (there or here): compared are the
        // objects as a set, each object's keys in order, and the sequence of sort keys.
        const byName = new Map(rows.map((r) => [r.name, r]));
        const sortKey = (name: string): string => {
          const r = byName.get(name)!;
          const col = { created: r.id, name: r.name, disk_id: r.disk_real_id, size: r.size, hostname: r.hostname };
          return JSON.stringify(sort.map((x) => col[x.field]));
        };
        expect(got.map((o) => Object.keys(o))).toEqual(objects.map((o: object) => Object.keys(o)));
        expect(new Set(got.map((o) => JSON.stringify(o)))).toEqual(new Set(objects.map((o: object) => JSON.stringify(o))));
        expect(got.map((o) => sortKey(o.name))).toEqual(objects.map((o: { name: string }) => sortKey(o.name)));
        const names = await s.req('GET', '/api/vm/json01/snapshot/', { query: { ...q, order_by: order } });
        expect((names.body.result as string[]).map(sortKey)).toEqual(rows.map((r) => sortKey(r.name)));
        expect([...(names.body.result as string[])].sort()).toEqual(rows.map((r) => r.name).sort());
        compared += got.length;
      }
    }
    expect(compared).toBeGreaterThan(500);
  });

  it('passes a created value of another shape on as stored, and answers [] for a VM without snapshots', async () => {
    const odd = await s.req('GET', '/api/vm/odd01/snapshot/', { query: { full: 'true' } });
    expect((odd.body.result as { created: string }[]).map((o) => o.created)).toEqual(['2026-03-04 05:06:07']);
    const r = await s.req('GET', '/api/vm/json01/snapshot/', { query: { full: 'true' } });
    expect((r.body.result as { created: string }[]).filter((o) => o.created === '2026-03-04T23:59:59.999000Z')).toHaveLength(6);
    expect((r.body.result as { created: string }[]).filter((o) => o.created === '2026-03-04T05:06:07.123000Z')).toHaveLength(6);
    expect((r.body.result as { created: string }[]).filter((o) => o.created === '2026-03-04T05:06:07Z')).toHaveLength(6);
    const empty = await s.req('GET', '/api/vm/other01/snapshot/', { query: { full: 'true' } });
    expect(empty.body.result).toEqual([]);
    expect((await s.req('GET', '/api/vm/other01/snapshot/')).body.result).toEqual([]);
  });

  it('indents on request and keeps the envelope', async () => {
    const r = await fetch(`${s.url}/api/vm/json01/snapshot/?full=true`, { headers: { 'ES-API-KEY': 'test-admin-key-0123456789abcdef', Accept: 'application/json; indent=2' } });
    const text = await r.text();
    expect(text).toContain('\n  "result": [\n');
    const body = JSON.parse(text) as { status: string; task_id: string; result: unknown[] };
    expect(body.status).toBe('SUCCESS');
    expect(r.headers.get('es_task_id')).toBe(body.task_id);
    expect(body.result).toHaveLength(24);
  });
});
