/**
 * A disk whose image is missing or shorter than its definition is flagged damaged and refuses new
 * snapshots with 417 `Disk image is damaged` (manual, and a scheduled slot fails with its alert),
 * found by the agent's check before a create, by a sync and at start-up; a sync that finds the
 * image whole or a successful rollback into the disk clears the flag.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { open, rm, truncate, writeFile } from 'node:fs/promises';
import { forEachDb, startTestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { ManualClock, define, defineByName, settle } from '../scheduler/helpers.js';
import { getSlot } from '../../src/scheduler/slot.repository.js';

type Server = Awaited<ReturnType<typeof startTestServer>> & { destroy(): Promise<void> };
const MiB = 1024 * 1024;
const DAMAGED = { detail: 'Disk image is damaged' };

forEachDb('damaged disks', (kind) => {
  const clock = new ManualClock('2026-06-01T00:30:00Z');
  const alerts: Array<Record<string, unknown>> = [];
  let hook: http.Server;
  let s: Server;
  let first: Server;
  let vm: VmFixture;

  beforeAll(async () => {
    hook = http.createServer((req, res) => {
      let data = '';
      req.on('data', (c: Buffer) => (data += c.toString()));
      req.on('end', () => {
        alerts.push(JSON.parse(data) as Record<string, unknown>);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    s = (await startTestServer(kind, { clock, alertWebhook: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/` })) as Server;
    first = s;
    vm = await makeVm(s, 'dmg1', { disks: [2] });
  });
  afterAll(async () => {
    await s?.close();
    await first?.destroy();
    await new Promise<void>((r) => hook.close(() => r()));
  });

  const create = async (name: string) => {
    const r = await s.req('POST', `/api/vm/dmg1/snapshot/${name}/`, { body: { disk_id: 1 } });
    await settle(s);
    return r;
  };
  const taskResult = async (taskId: string) => (await s.req('GET', `/api/task/${taskId}/status/`)).body;
  const sync = async () => {
    expect((await s.req('PUT', '/api/vm/dmg1/snapshot/', { body: { disk_id: 1 } })).status).toBe(201);
    await settle(s);
  };
  const fillWhole = async () => {
    const fh = await open(vm.diskPaths[0]!, 'w');
    await fh.write(Buffer.alloc(MiB, 0x5a), 0, MiB, 0);
    await fh.truncate(2 * MiB);
    await fh.close();
  };

  it('a create finds a cut-off image: the task fails, the disk is flagged, the next create gets 417', async () => {
    await fillWhole();
    expect((await create('good')).status).toBe(201);
    await truncate(vm.diskPaths[0]!, MiB); // shorter than its 2 MiB definition, behind esnap's back
    const r = await create('cut');
    expect(r.status).toBe(201);
    const t = await taskResult(r.body.task_id);
    expect([t.status, t.result.message]).toEqual(['FAILURE', 'Disk image is damaged']);
    const again = await s.req('POST', '/api/vm/dmg1/snapshot/again/', { body: { disk_id: 1 } });
    expect([again.status, again.body]).toEqual([417, DAMAGED]);
    // No row is left behind by either.
    const names = (await s.req('GET', '/api/vm/dmg1/snapshot/')).body.result;
    expect(names).toEqual(['good']);
  });

  it('a scheduled slot of a damaged disk fails, with its alert', async () => {
    const def = await define(s, 'dmg1', vm.uuid, 'hourly', { schedule: '0 * * * *', retention: 3, disk_id: 1 });
    clock.set('2026-06-01T01:00:00Z');
    await s.runtime.scheduler.tick();
    await settle(s);
    const slot = await getSlot(s.runtime.ctx.db, def.id, '2026-06-01T01:00:00.000Z');
    expect(slot?.state).toBe('failed');
    expect(slot?.reason).toContain('Disk image is damaged');
    expect((await defineByName(s, vm.uuid, 'hourly')).last_error).not.toBeNull();
    await s.runtime.alerts.stop(); // delivers what is queued
    expect(alerts.some((a) => JSON.stringify(a).includes('hourly'))).toBe(true);
    await s.req('DELETE', '/api/vm/dmg1/define/snapshot/hourly/');
  });

  it('a sync keeps the flag while the image is cut off; a rollback into the disk clears it', async () => {
    await sync();
    expect((await s.req('POST', '/api/vm/dmg1/snapshot/x/', { body: { disk_id: 1 } })).status).toBe(417);
    const rb = await s.req('PUT', '/api/vm/dmg1/snapshot/good/', { body: { disk_id: 1, force: true } });
    expect(rb.status).toBe(201);
    await settle(s);
    expect((await taskResult(rb.body.task_id)).status).toBe('SUCCESS');
    expect((await create('after-rollback')).status).toBe(201);
  });

  it('a sync flags a missing image, and clears the flag once it finds the image whole', async () => {
    await rm(vm.diskPaths[0]!);
    await sync();
    expect((await s.req('POST', '/api/vm/dmg1/snapshot/y/', { body: { disk_id: 1 } })).body).toEqual(DAMAGED);
    await fillWhole();
    await sync();
    expect((await create('after-sync')).status).toBe(201);
  });

  it('a restart flags an image cut off while esnap was down, before any task runs', async () => {
    const db = s.runtime.ctx.db;
    const disk = await db.selectFrom('vm_disk').select('damaged').where('vm_uuid', '=', vm.uuid).executeTakeFirstOrThrow();
    expect(disk.damaged).toBeNull();
    await writeFile(vm.diskPaths[0]!, ''); // 0 bytes, as the interrupted rollback of issue 12 left it
    await s.close();
    s = (await startTestServer(kind, { clock, reuse: first.dbInfo })) as Server;
    const r = await s.req('POST', '/api/vm/dmg1/snapshot/z/', { body: { disk_id: 1 } });
    expect([r.status, r.body]).toEqual([417, DAMAGED]);
  });
});
