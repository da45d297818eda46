/**
 * A real crash mid-backup: `esnap serve` (embedded, two file storages) gets SIGKILL while restic
 * is storing a backup, and is started again on the same data. The restart fails the task, lists
 * no backup (no PENDING row left, no OK row without data), removes the source snapshot the backup
 * read and whatever restic had stored of it, and the next backup succeeds.
 */
import { afterAll, beforeAll, expect, it, describe } from 'vitest';
import { execFileSync } from 'node:child_process';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startServe, sleep, type EsnapServe } from '../helpers/esnap-process.js';
import { newBackupServeData, type ServeData } from '../helpers/serve-data.js';
import { openDatabase } from '../../src/db/dialect.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';

describe('backup crash repair [sqlite]', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('backup crash test needs restic', reason);
  let data: ServeData;
  let env: Record<string, string>;
  let server: EsnapServe | null = null;

  beforeAll(async () => {
    data = await newBackupServeData('sqlite', { prefix: 'esnap-bkcrash-', node: 'bknode' });
    env = data.env;
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await data?.cleanup();
  });

  // A bound, not a timing: a 256 MiB restic backup on a loaded CI machine took longer than the
  // former 30 s, and the test then read the list before the task had ended.
  const waitDrained = async (s: EsnapServe): Promise<void> => {
    for (let i = 0; i < 3600; i++) {
      if ((await s.api('GET', '/api/task/')).body.length === 0) return;
      await sleep(50);
    }
    throw new Error('tasks still running after 180 s');
  };

  it('repairs a backup cut off by SIGKILL, and the next backup succeeds', async () => {
    server = await startServe(env);
    expect((await server.api('POST', '/api/vm/bk/define/', {})).status).toBe(201);
    const disk = await server.api('POST', '/api/vm/bk/define/disk/1/', { size: 256 });
    expect(disk.status).toBe(201);
    const path = disk.body.result.path as string;
    const fh = await open(join(data.dir, 'storage', path), 'r+');
    const chunk = randomBytes(1024 * 1024);
    for (let i = 0; i < 256; i++) await fh.write(chunk.map((b) => b ^ i), 0, chunk.length, i * chunk.length);
    await fh.close();
    const def = await server.api('POST', '/api/vm/bk/define/backup/d1', { type: 2, node: 'bknode', zpool: 'backup', schedule: '0 3 * * *', retention: 5 });
    expect(def.status).toBe(201);

    const created = await server.api('POST', '/api/vm/bk/backup/d1', {});
    expect(created.status).toBe(201);
    const taskId = created.body.task_id as string;
    // Until restic has begun storing data (its repository's data folder gets packs), then SIGKILL.
    for (let i = 0; i < 2000; i++) {
      const st = await server.api('GET', `/api/task/${taskId}/status/`);
      if (st.body.status !== 'PENDING' && st.body.status !== 'STARTED') throw new Error(`task ended before the crash: ${JSON.stringify(st.body)}`);
      const packs = await readdir(join(data.dir, 'backup', '.esnap-restic', 'data'), { recursive: true, withFileTypes: true }).catch(() => []);
      if (packs.some((e) => e.isFile())) break;
      await sleep(10);
    }
    await server.stop('SIGKILL');
    server = null;
    const opened = openDatabase(data.dbUrl);
    const during = await opened.db.selectFrom('backup').select(['status']).execute();
    await opened.db.destroy();
    expect(during).toEqual([{ status: 2 }]);

    server = await startServe(env);
    const st = await server.api('GET', `/api/task/${taskId}/status/`);
    expect(st.body.status).toBe('FAILURE');
    await waitDrained(server);
    expect((await server.api('GET', '/api/vm/bk/backup')).body.result).toEqual([]);
    const after = openDatabase(data.dbUrl);
    expect(await after.db.selectFrom('backup').selectAll().execute()).toEqual([]);
    await after.db.destroy();
    // The source snapshot is gone; restic holds no snapshot of the cut backup.
    expect(await readdir(join(data.dir, 'storage', '.snapshots', path)).catch(() => [])).toEqual([]);
    const snaps = execFileSync('restic', ['snapshots', '--json', '--no-lock'], {
      env: { ...process.env, RESTIC_REPOSITORY: join(data.dir, 'backup', '.esnap-restic'), RESTIC_PASSWORD_FILE: join(data.dir, 'backup-keys', 'backup.restic-password') },
    }).toString();
    expect(JSON.parse(snaps || '[]')).toEqual([]);

    const again = await server.api('POST', '/api/vm/bk/backup/d1', {});
    expect(again.status).toBe(201);
    await waitDrained(server);
    const list = (await server.api('GET', '/api/vm/bk/backup?full=true')).body.result;
    expect(list.map((b: { status: number }) => b.status)).toEqual([1]);
  }, 240_000);
});
