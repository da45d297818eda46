/**
 * A real crash: `esnap serve` runs as a child process, gets SIGKILL while a snapshot task is
 * running on its agent, and is started again on the same database and storage. The restart must
 * fail the interrupted task with the failure cleanup, re-sync the disk, and leave no row pending.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { forEachDb } from '../helpers/server.js';
import { startServe, type EsnapServe } from '../helpers/esnap-process.js';
import { newServeData, type ServeData } from '../helpers/serve-data.js';
import { openDatabase } from '../../src/db/dialect.js';

forEachDb('crash repair', (kind) => {
  let data: ServeData;
  let dir: string;
  let server: EsnapServe | null = null;

  beforeAll(async () => {
    data = await newServeData(kind, { prefix: 'esnap-crash-', node: 'crashnode' });
    dir = data.dir;
  });

  afterAll(async () => {
    await server?.stop('SIGKILL');
    await data?.cleanup();
  });

  it('fails the interrupted create with cleanup and re-syncs the disk after SIGKILL', async () => {
    server = await startServe(data.env);
    // Register a VM with a disk whose image holds 1 GiB of real data, so the copy takes a while.
    expect((await server.api('POST', '/api/vm/crashvm/define/', {})).status).toBe(201);
    const disk = await server.api('POST', '/api/vm/crashvm/define/disk/1/', { size: 1024 });
    expect(disk.status).toBe(201);
    const vm = (await server.api('GET', '/api/vm/crashvm/define/')).body.result;
    const image = join(dir, 'storage', `${vm.uuid}-disk0`);
    const fh = await open(image, 'r+');
    const chunk = randomBytes(1024 * 1024);
    for (let i = 0; i < 1024; i++) await fh.write(chunk, 0, chunk.length, i * chunk.length);
    await fh.close();

    const created = await server.api('POST', '/api/vm/crashvm/snapshot/mid-crash/', {});
    expect(created.status).toBe(201);
    const taskId = created.body.task_id as string;
    // Wait until the agent has started the task, then kill the whole server.
    for (let i = 0; i < 400; i++) {
      const st = await server.api('GET', `/api/task/${taskId}/status/`);
      if (st.body.status === 'STARTED') break;
      if (st.body.status !== 'PENDING') throw new Error(`task ended before the crash: ${JSON.stringify(st.body)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await server.stop('SIGKILL');
    server = null;

    // While down, the database shows the half state a crash leaves.
    const opened = openDatabase(data.dbUrl);
    const during = await opened.db.selectFrom('snapshot').select(['status']).where('name', '=', 'mid-crash').execute();
    await opened.db.destroy();
    expect(during).toEqual([{ status: 2 }]);

    server = await startServe(data.env);
    const st = await server.api('GET', `/api/task/${taskId}/status/`);
    expect(st.status).toBe(400);
    expect(st.body.status).toBe('FAILURE');
    expect(st.body.result.message).toMatch(/interrupted/);
    // The repair sync runs as a task of its own; wait for the VM's pending tasks to drain.
    for (let i = 0; i < 200; i++) {
      const t = await server.api('GET', '/api/task/');
      if (t.body.length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const list = await server.api('GET', '/api/vm/crashvm/snapshot/?full=true');
    for (const s of list.body.result) expect(s.status).toBe(1);
    // No half snapshot is left on storage: what storage holds matches the rows.
    const files = (await readdir(join(dir, 'storage', '.snapshots', `${vm.uuid}-disk0`)).catch(() => [])).filter(
      (f) => !f.startsWith('.') && !f.endsWith('.json'),
    );
    expect(files.sort()).toEqual(list.body.result.map((s: { id: number }) => `es-${s.id}`).sort());
    // The disk lock is free again: a new snapshot works.
    const again = await server.api('POST', '/api/vm/crashvm/snapshot/after-crash/', {});
    expect(again.status).toBe(201);
  }, 120_000);
});

