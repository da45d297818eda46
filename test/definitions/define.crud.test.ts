/**
 * Snapshot definitions over HTTP: create, show, update, delete, disk ids, next_run and the task
 * log (spec 4.3, 5.2, 7A.3), on both databases.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { nextCronRun } from '../../src/domain/cron.js';
import { addSnapshot, addVm, defineRow, DEFINE_KEYS, dummyIdRe, EXTENDED_KEYS, ids } from './fixtures.js';

type Server = TestServer & { cleanup(): Promise<void> };

forEachDb('definitions: create, show, update, delete', (kind) => {
  let s: Server;
  let vm: string;
  let dcId: number;
  const base = '/api/vm/web01.test/define/snapshot';

  beforeAll(async () => {
    s = await withServer(kind);
    vm = await addVm(s, 'web01.test', { disks: 2 });
    dcId = (await ids(s)).dcId;
  });
  afterAll(() => s.cleanup());

  it('POST creates with 201 SUCCESS and the object in 5.2 order', async () => {
    const r = await s.req('POST', `${base}/nightly`, {
      body: { schedule: '30 4 * * 6', retention: 7, desc: 'every saturday', fsfreeze: true },
    });
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('SUCCESS');
    expect(r.body.task_id).toMatch(dummyIdRe(1, 1, dcId));
    expect(Object.keys(r.body.result)).toEqual(DEFINE_KEYS);
    expect(r.body.result).toEqual({
      hostname: 'web01.test',
      vm_uuid: vm,
      name: 'nightly',
      disk_id: 1,
      desc: 'every saturday',
      active: true,
      schedule: '30 4 * * 6',
      retention: 7,
      fsfreeze: true,
      tz: 'UTC',
      catchup: true,
      retention_days: null,
    });
  });

  it('POST sets next_run from the schedule in its zone, and null when inactive', async () => {
    const before = new Date();
    const r = await s.req('POST', `${base}/yearly`, { body: { schedule: '0 0 1 1 *', retention: 1, tz: 'Europe/Bratislava' } });
    expect(r.status).toBe(201);
    expect(r.body.result.tz).toBe('Europe/Bratislava');
    const row = await defineRow(s, vm, 'yearly');
    expect(row?.next_run).toBe(nextCronRun('0 0 1 1 *', before, 'Europe/Bratislava').toISOString());
    expect(row?.next_run).not.toBe(nextCronRun('0 0 1 1 *', before).toISOString());

    const off = await s.req('POST', `${base}/paused`, { body: { schedule: '0 0 1 1 *', retention: 1, active: false } });
    expect(off.status).toBe(201);
    expect(off.body.result.active).toBe(false);
    expect((await defineRow(s, vm, 'paused'))?.next_run).toBeNull();
  });

  it('a schedule that never fires is refused on POST and PUT (esnap decision), leaving nothing written', async () => {
    const r = await s.req('POST', `${base}/feb30`, { body: { schedule: '0 0 30 2 *', retention: 1 } });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ status: 'FAILURE', result: { schedule: ['Schedule never fires.'] } });
    expect(await defineRow(s, vm, 'feb30')).toBeUndefined();
    // Danube's syntax and range messages keep precedence; a leap day fires and is accepted.
    expect((await s.req('POST', `${base}/feb30`, { body: { schedule: '0 0 32 2 *', retention: 1 } })).body.result).toEqual({ schedule: ['Incorrect value in 3. column.'] });
    expect((await s.req('POST', `${base}/leap`, { body: { schedule: '0 0 29 2 *', retention: 1 } })).status).toBe(201);

    const put = await s.req('PUT', `${base}/leap`, { body: { schedule: '0 0 31 4 *', desc: 'x' } });
    expect(put.status).toBe(400);
    expect(put.body.result).toEqual({ schedule: ['Schedule never fires.'] });
    expect(await defineRow(s, vm, 'leap')).toMatchObject({ schedule: '0 0 29 2 *', desc: '' });
    expect((await s.req('DELETE', `${base}/leap`)).status).toBe(200);
  });

  it('booleans use one rule: "false" is false, "1" is true; catchup and retention_days are stored', async () => {
    const r = await s.req('POST', `${base}/bools`, {
      body: { schedule: '0 * * * *', retention: '3', active: 'false', fsfreeze: '1', catchup: 'f', retention_days: '14' },
    });
    expect(r.status).toBe(201);
    expect(r.body.result).toMatchObject({ active: false, fsfreeze: true, catchup: false, retention: 3, retention_days: 14 });
  });

  it('POST of an existing definition is 406', async () => {
    const r = await s.req('POST', `${base}/nightly`, { body: { schedule: '0 0 * * *', retention: 1 } });
    expect(r.status).toBe(406);
    expect(r.body).toEqual({ detail: 'Snapshot definition already exists' });
  });

  it('GET shows the object; extended adds the count of linked snapshots of any status', async () => {
    const r = await s.req('GET', `${base}/nightly/`);
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('SUCCESS');
    expect(Object.keys(r.body.result)).toEqual(DEFINE_KEYS);
    expect(r.body.result.name).toBe('nightly');

    const id = (await defineRow(s, vm, 'nightly'))!.id;
    await addSnapshot(s, vm, id, 'nightly-1', 1);
    await addSnapshot(s, vm, id, 'nightly-2', 4);
    await addSnapshot(s, vm, null, 'manual-1', 1);
    const x = await s.req('GET', `${base}/nightly`, { query: { extended: 'true' } });
    expect(Object.keys(x.body.result)).toEqual(EXTENDED_KEYS);
    expect(x.body.result.snapshots).toBe(2);
    const f = await s.req('GET', `${base}/nightly`, { query: { extended: 'false' } });
    expect(Object.keys(f.body.result)).toEqual(DEFINE_KEYS);
  });

  it('GET of a missing definition is 404; the DC prefix reaches the same view', async () => {
    const r = await s.req('GET', `${base}/nothere`);
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ detail: 'Snapshot definition not found' });
    const d = await s.req('GET', `/api/dc/main/vm/web01.test/define/snapshot/nightly/`);
    expect(d.status).toBe(200);
    expect(d.body.result.name).toBe('nightly');
    const byUuid = await s.req('GET', `/api/vm/${vm}/define/snapshot/nightly`);
    expect(byUuid.body.result.hostname).toBe('web01.test');
  });

  it('disk_id: an existing disk within 1–2 for kvm; missing disks are 412', async () => {
    const r = await s.req('POST', `${base}/nightly`, { body: { disk_id: 2, schedule: '0 1 * * *', retention: 2 } });
    expect(r.status).toBe(201);
    expect(r.body.result.disk_id).toBe(2);
    const g = await s.req('GET', `${base}/nightly`, { query: { disk_id: '2' } });
    expect(g.body.result.schedule).toBe('0 1 * * *');
    for (const bad of [3, 0, -1, 'abc', '', null]) {
      const x = await s.req('POST', `${base}/other`, { body: { disk_id: bad, schedule: '0 1 * * *', retention: 2 } });
      expect(x.status, String(bad)).toBe(412);
      expect(x.body).toEqual({ detail: 'Invalid disk_id' });
    }
    const gx = await s.req('GET', `${base}/nightly`, { query: { disk_id: '3' } });
    expect(gx.status).toBe(412);
  });

  it('disk_id above 2 on a kvm VM is a field error; bhyve allows up to 6', async () => {
    await addVm(s, 'big.test', { disks: 3 });
    const k = await s.req('POST', '/api/vm/big.test/define/snapshot/d3', { body: { disk_id: 3, schedule: '0 1 * * *', retention: 2 } });
    expect(k.status).toBe(400);
    expect(k.body.result).toEqual({ disk_id: ['Ensure this value is less than or equal to 2.'] });
    await addVm(s, 'bhyve.test', { disks: 3, brand: 'bhyve' });
    const b = await s.req('POST', '/api/vm/bhyve.test/define/snapshot/d3', { body: { disk_id: 3, schedule: '0 1 * * *', retention: 2 } });
    expect(b.status).toBe(201);
    expect(b.body.result.disk_id).toBe(3);
  });

  it('fsfreeze is ignored for a VM that is not HVM', async () => {
    await addVm(s, 'zone.test', { brand: 'joyent' });
    const r = await s.req('POST', '/api/vm/zone.test/define/snapshot/z', { body: { schedule: '0 1 * * *', retention: 2, fsfreeze: true } });
    expect(r.status).toBe(201);
    expect(r.body.result.fsfreeze).toBe(false);
    const u = await s.req('PUT', '/api/vm/zone.test/define/snapshot/z', { body: { fsfreeze: true } });
    expect(u.body.result.fsfreeze).toBe(false);
  });

  it('PUT updates the submitted fields only, with 200 and the object', async () => {
    const r = await s.req('PUT', `${base}/nightly`, { body: { desc: 'changed', retention: 9, catchup: false, retention_days: 30 } });
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('SUCCESS');
    expect(Object.keys(r.body.result)).toEqual(DEFINE_KEYS);
    expect(r.body.result).toMatchObject({
      name: 'nightly',
      disk_id: 1,
      desc: 'changed',
      retention: 9,
      schedule: '30 4 * * 6',
      active: true,
      fsfreeze: true,
      catchup: false,
      retention_days: 30,
    });
    const n = await s.req('PUT', `${base}/nightly`, { body: { retention_days: null, name: 'renamed', disk_id: 1 } });
    expect(n.body.result.retention_days).toBeNull();
    expect(n.body.result.name).toBe('nightly');
  });

  it('PUT moves next_run only when the schedule, zone or active flag changes', async () => {
    const db = s.runtime.ctx.db;
    const sentinel = '2000-01-01T00:00:00.000Z';
    await db.updateTable('snapshot_define').set({ next_run: sentinel }).where('vm_uuid', '=', vm).where('name', '=', 'nightly').execute();
    await s.req('PUT', `${base}/nightly`, { body: { desc: 'again', active: true, schedule: '30 4 * * 6' } });
    expect((await defineRow(s, vm, 'nightly'))?.next_run).toBe(sentinel);

    const before = new Date();
    await s.req('PUT', `${base}/nightly`, { body: { schedule: '0 0 1 1 *' } });
    expect((await defineRow(s, vm, 'nightly'))?.next_run).toBe(nextCronRun('0 0 1 1 *', before).toISOString());
    await s.req('PUT', `${base}/nightly`, { body: { tz: 'America/New_York' } });
    expect((await defineRow(s, vm, 'nightly'))?.next_run).toBe(nextCronRun('0 0 1 1 *', before, 'America/New_York').toISOString());
    await s.req('PUT', `${base}/nightly`, { body: { active: false } });
    expect((await defineRow(s, vm, 'nightly'))?.next_run).toBeNull();
    await s.req('PUT', `${base}/nightly`, { body: { active: true } });
    expect((await defineRow(s, vm, 'nightly'))?.next_run).toBe(nextCronRun('0 0 1 1 *', before, 'America/New_York').toISOString());
  });

  it('PUT and DELETE of a missing definition are 404', async () => {
    for (const m of ['PUT', 'DELETE']) {
      const r = await s.req(m, `${base}/nothere`, { body: {} });
      expect(r.status).toBe(404);
      expect(r.body).toEqual({ detail: 'Snapshot definition not found' });
    }
  });

  it('DELETE answers 200 with null and keeps the snapshots, unlinked', async () => {
    const row = (await defineRow(s, vm, 'nightly'))!;
    const linked = await s.runtime.ctx.db.selectFrom('snapshot').select(['id', 'define_id']).where('define_id', '=', row.id).execute();
    expect(linked).toHaveLength(2);
    const r = await s.req('DELETE', `${base}/nightly`);
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('SUCCESS');
    expect(r.body.result).toBeNull();
    expect(r.body.task_id).toMatch(dummyIdRe(1, 1, dcId));
    const after = await s.runtime.ctx.db
      .selectFrom('snapshot')
      .select(['id', 'define_id'])
      .where('id', 'in', linked.map((l) => l.id))
      .execute();
    expect(after.map((a) => a.define_id)).toEqual([null, null]);
    expect((await s.req('GET', `${base}/nightly`)).status).toBe(404);
    // The definition on disk 2 is a different one and stays.
    expect((await s.req('GET', `${base}/nightly`, { query: { disk_id: '2' } })).status).toBe(200);
  });

  it('writes leave SUCCESS task-log entries with Danube-style details', async () => {
    await s.req('POST', '/api/vm/web01.test/define/snapshot/logged', { body: { schedule: '5 * * * *', retention: 4, desc: 'x y' } });
    await s.req('PUT', '/api/vm/web01.test/define/snapshot/logged', { body: { retention: 5, active: false } });
    await s.req('DELETE', '/api/vm/web01.test/define/snapshot/logged');
    const entries = await s.runtime.ctx.db
      .selectFrom('task_log')
      .selectAll()
      .where('detail', 'like', "%snapdef='logged'%")
      .orderBy('id')
      .execute();
    expect(entries.map((e) => [e.msg, e.status, e.flag, e.object_type, e.object_name, e.task_type])).toEqual([
      ['Create server snapshot definition', 'SUCCESS', 1, 'vm', 'web01.test', 'd'],
      ['Update server snapshot definition', 'SUCCESS', 3, 'vm', 'web01.test', 'd'],
      ['Delete server snapshot definition', 'SUCCESS', 2, 'vm', 'web01.test', 'd'],
    ]);
    expect(entries.map((e) => e.detail)).toEqual([
      "disk_id=1 snapdef='logged' desc='x y' active=true schedule='5 * * * *' retention=4 fsfreeze=false tz='UTC' catchup=true retention_days=None",
      "disk_id=1 snapdef='logged' active=false retention=5",
      "disk_id=1 snapdef='logged'",
    ]);
    for (const e of entries) {
      expect(e.task_id).toMatch(dummyIdRe(1, 1, dcId));
      expect(e.username).toBe('admin');
      expect(e.object_pk).toBe(vm);
    }
  });

  it('a failed write leaves no row and no log entry', async () => {
    const count = async () =>
      Number((await s.runtime.ctx.db.selectFrom('task_log').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const n0 = await count();
    const r = await s.req('POST', `${base}/broken`, { body: { schedule: 'nope', retention: 1 } });
    expect(r.status).toBe(400);
    expect(await defineRow(s, vm, 'broken')).toBeUndefined();
    expect(await count()).toBe(n0);
  });
});

describe('definitions: module file', () => {
  it('exports its views with descriptions', async () => {
    const { defineViews } = await import('../../src/definitions/define.routes.js');
    expect(defineViews.map((v) => v.path)).toEqual([
      '/vm/define/snapshot',
      '/vm/:hostname_or_uuid/define/snapshot',
      '/vm/:hostname_or_uuid/define/snapshot/:snapdef',
      '/vm/:hostname_or_uuid/define/snapshot/:snapdef/run',
      '/vm/:hostname_or_uuid/define/snapshot/:snapdef/preview',
    ]);
    for (const v of defineViews) {
      expect(v.dcBound).toBe(true);
      expect(v.description.length).toBeGreaterThan(20);
    }
  });
});
