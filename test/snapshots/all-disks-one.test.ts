import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';

// `disk_id: "all"` is a request for every disk of the VM, however many it has: on a one-disk VM it
// must not fall through to the integer validation of a single disk id (issue 12, defect 5).
forEachDb('snapshot of all disks on a one-disk VM', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind);
  });
  afterAll(async () => s.cleanup());

  it('creates the snapshot on the only disk, as it does on two', async () => {
    const vm = await makeVm(s, 'single', { disks: [1] });
    const r = await s.stream('POST', '/api/vm/single/snapshot/whole/', { body: { disk_id: 'all', note: 'one' } });
    expect(r.status).toBe(201);
    expect(r.finalStatus).toBe(200);
    expect(r.final).toMatchObject({ status: 'SUCCESS', result: { returncode: 0, message: 'Snapshot successfully created' } });
    const rows = await s.runtime.ctx.db.selectFrom('snapshot').select(['name', 'disk_real_id', 'status', 'note']).where('vm_uuid', '=', vm.uuid).execute();
    expect(rows).toEqual([{ name: 'whole', disk_real_id: 0, status: 1, note: 'one' }]);
    // The name check covers that disk too.
    expect((await s.req('POST', '/api/vm/single/snapshot/whole/', { body: { disk_id: 'all' } })).body).toEqual({ detail: 'Snapshot already exists' });
  });
});
