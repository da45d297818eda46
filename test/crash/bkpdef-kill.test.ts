/**
 * kill -9 during backup definition writes: a real `esnap serve` gets SIGKILL (its process group)
 * while a burst of creates, updates and deletes of backup definitions is in flight, and is
 * started again. Each write is one transaction with its task-log entry, so after every kill:
 * every definition row is whole and readable over the API, it has its create entry in the task
 * log, a definition whose last logged write is a delete is gone, and writes work again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, sleep, type EsnapServe } from '../helpers/esnap-process.js';
import { newBackupServeData, type ServeData } from '../helpers/serve-data.js';
import { openDatabase } from '../../src/db/dialect.js';

const KILLS = 3;

describe('backup definition writes under kill -9 [sqlite]', () => {
  let data: ServeData;
  let env: Record<string, string>;
  let server: EsnapServe | null = null;

  beforeAll(async () => {
    data = await newBackupServeData('sqlite', { prefix: 'esnap-bkdkill-', node: 'kdnode' });
    env = data.env;
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await data?.cleanup();
  });

  it(`keeps rows and task log whole across ${KILLS} kills`, async () => {
    server = await startServe(env, { group: true });
    expect((await server.api('POST', '/api/vm/kd/define/', {})).status).toBe(201);
    expect((await server.api('POST', '/api/vm/kd/define/disk/1/', { size: 8 })).status).toBe(201);
    const body = { type: 2, node: 'kdnode', zpool: 'backup', schedule: '0 3 * * *', retention: 4 };
    for (let round = 0; round < KILLS; round++) {
      const s = server!;
      // A burst of writes, not awaited: creates, updates of existing ones, deletes.
      const burst: Array<Promise<unknown>> = [];
      for (let i = 0; i < 12; i++) {
        const name = `r${round}d${i}`;
        burst.push(s.api('POST', `/api/vm/kd/define/backup/${name}`, body).catch(() => null));
        if (round > 0) {
          const old = `r${round - 1}d${i}`;
          burst.push(s.api(i % 2 ? 'PUT' : 'DELETE', `/api/vm/kd/define/backup/${old}`, { retention: 9, desc: `round ${round}` }).catch(() => null));
        }
      }
      await sleep(5 + Math.floor(Math.random() * 60));
      await s.killGroup();
      await Promise.allSettled(burst);
      server = null;

      const opened = openDatabase(data.dbUrl);
      const rows = await opened.db.selectFrom('backup_define').selectAll().execute();
      const logs = await opened.db.selectFrom('task_log').select(['msg', 'detail', 'id']).where('msg', 'like', '% server backup definition').orderBy('id').execute();
      await opened.db.destroy();
      const last = new Map<string, string>();
      for (const l of logs) {
        const m = /bkpdef='([^']+)'/.exec(l.detail);
        if (m) last.set(m[1]!, l.msg);
      }
      for (const r of rows) {
        expect([1, 2]).toContain(r.type);
        expect(r.schedule).toBe('0 3 * * *');
        expect(r.next_run).not.toBeNull();
        expect(last.has(r.name), `row ${r.name} without its log entry`).toBe(true);
        expect(last.get(r.name)).not.toBe('Delete server backup definition');
        if (last.get(r.name) === 'Update server backup definition') expect(r.retention).toBe(9);
      }
      for (const [name, msg] of last) if (msg === 'Delete server backup definition') expect(rows.map((r) => r.name)).not.toContain(name);

      server = await startServe(env, { group: true });
      const list = await server.api('GET', '/api/vm/kd/define/backup?full=true');
      expect(list.status).toBe(200);
      expect(list.body.result.map((d: { name: string }) => d.name).sort()).toEqual(rows.map((r) => r.name).sort());
      const probe = await server.api('POST', `/api/vm/kd/define/backup/p${round}`, body);
      expect(probe.status).toBe(201);
    }
  }, 240_000);
});
