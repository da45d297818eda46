/**
 * A backup delete that fails after, or before, its data went: the rows must say what the backup
 * storage holds. The failure is made at the process edge (the command runner, as an agent killed
 * right after `restic forget` returned, or before it ran); restic and its repository are real.
 * Before the check existed, a delete cut off after the forget left the row ok with no restic
 * snapshot behind it (the chaos run, seed 3), and every restore of it failed.
 */
import { execFileSync } from 'node:child_process';
import { open } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServer, type TestServer } from '../helpers/server.js';
import { settle } from '../scheduler/helpers.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';
import { FaultRunner, isCommand } from '../helpers/fault-runner.js';
import { passwordFile, RESTIC_DIR } from '../../src/backups/restic.js';
import { recheckLateBackupDeletes } from '../../src/backups/backup.service.js';
import type { TaskRow } from '../../src/db/schema.js';

const MB = 1024 * 1024;

/** Where `restic forget` is made to fail: before it runs, or after it has run. */
let fault: 'none' | 'before' | 'after' = 'none';
const forgetFault = (when: 'before' | 'after') => (argv: readonly string[]): undefined => {
  if (fault === when && isCommand(argv, 'restic', 'forget')) throw new Error(`agent stopped ${when} the forget`);
  return undefined;
};

describe('a backup delete that fails: the rows follow the backup storage', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('backup delete check needs restic', reason);

  const runner = new FaultRunner({ before: forgetFault('before'), after: forgetFault('after') });
  let s: TestServer & { cleanup(): Promise<void> };
  let backupRoot: string;

  const resticIds = (): string[] => {
    const out = execFileSync('restic', ['snapshots', '--json', '--no-lock'], {
      env: { ...process.env, RESTIC_REPOSITORY: join(backupRoot, RESTIC_DIR), RESTIC_PASSWORD_FILE: passwordFile(join(s.storageRoot, 'backup-keys'), 'backup') },
    });
    return (JSON.parse(out.toString()) as Array<{ id: string }>).map((x) => x.id);
  };
  const backupNamed = async (name: string) => s.runtime.ctx.db.selectFrom('backup').selectAll().where('name', '=', name).executeTakeFirst();
  const makeBackup = async (): Promise<string> => {
    // Names carry their second: one backup per second.
    await new Promise((res) => setTimeout(res, 1100));
    const c = await s.stream('POST', '/api/vm/del01/backup/daily', { body: {} });
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    await settle(s, 60_000);
    const rows = await s.runtime.ctx.db.selectFrom('backup').select('name').orderBy('id', 'desc').execute();
    return rows[0]!.name;
  };

  beforeAll(async () => {
    s = await withServer('sqlite', {
      runner,
      storages: (root) => {
        backupRoot = join(root, 'backup');
        return [
          { name: 'default', driver: 'file', root: join(root, 'storage') },
          { name: 'backup', driver: 'file', root: backupRoot },
        ];
      },
    });
    expect((await s.req('POST', '/api/vm/del01/define/', { body: {} })).status).toBe(201);
    const d = await s.req('POST', '/api/vm/del01/define/disk/1/', { body: { size: 4 } });
    const fh = await open(join(s.storageRoot, 'storage', d.body.result.path as string), 'r+');
    await fh.write(randomBytes(4 * MB), 0, 4 * MB, 0);
    await fh.close();
    const def = await s.req('POST', '/api/vm/del01/define/backup/daily', { body: { type: 2, node: s.node, zpool: 'backup', schedule: '0 3 * * *', retention: 30 } });
    expect(def.status, def.text).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await s?.close();
    await s?.cleanup();
  });

  it('cut off after restic forget: the delete fails, the check finds the data gone and the row leaves', async () => {
    const name = await makeBackup();
    const row = (await backupNamed(name))!;
    expect(resticIds().some((id) => id.startsWith(row.restic_id!))).toBe(true);
    fault = 'after';
    const del = await s.stream('DELETE', `/api/vm/del01/backup/${name}`, { body: {} });
    fault = 'none';
    expect(del.finalStatus).not.toBe(200);
    await settle(s, 60_000);
    expect(resticIds().some((id) => id.startsWith(row.restic_id!))).toBe(false);
    // Before the check: the row was ok, with nothing in the repository behind it.
    expect(await backupNamed(name)).toBeUndefined();
    expect((await s.req('GET', `/api/vm/del01/backup/${name}`)).status).toBe(404);
    const check = await s.runtime.ctx.db.selectFrom('task').select(['state', 'result']).where('kind', '=', 'backup_check').orderBy('created', 'desc').executeTakeFirstOrThrow();
    expect(check.state).toBe('SUCCESS');
    expect(check.result).toMatch(/deleted=1/);
  }, 120_000);

  it('failed before restic forget: the check finds the data and the backup is ok again, and can be deleted', async () => {
    const name = await makeBackup();
    const row = (await backupNamed(name))!;
    fault = 'before';
    const del = await s.stream('DELETE', `/api/vm/del01/backup/${name}`, { body: {} });
    fault = 'none';
    expect(del.finalStatus).not.toBe(200);
    await settle(s, 60_000);
    expect(resticIds().some((id) => id.startsWith(row.restic_id!))).toBe(true);
    expect((await backupNamed(name))?.status).toBe(1);
    const again = await s.stream('DELETE', `/api/vm/del01/backup/${name}`, { body: {} });
    expect(again.finalStatus, JSON.stringify(again.final)).toBe(200);
    await settle(s, 60_000);
    expect(await backupNamed(name)).toBeUndefined();
    expect(resticIds().some((id) => id.startsWith(row.restic_id!))).toBe(false);
  }, 120_000);

  it('a delete that succeeded after its deadline had failed it: its backups, ok again, are checked again', async () => {
    const name = await makeBackup();
    const row = (await backupNamed(name))!;
    // The late delete's forget, done behind the server's back as the silent agent did it.
    execFileSync('restic', ['forget', '--prune', row.restic_id!], {
      env: { ...process.env, RESTIC_REPOSITORY: join(backupRoot, RESTIC_DIR), RESTIC_PASSWORD_FILE: passwordFile(join(s.storageRoot, 'backup-keys'), 'backup') },
      stdio: 'ignore',
    });
    const late = { kind: 'backup_delete', state: 'FAILURE', context: JSON.stringify({ backupIds: [row.id], bulk: false, detail: '' }) } as unknown as TaskRow;
    await recheckLateBackupDeletes(s.runtime.ctx, [late]);
    await settle(s, 60_000);
    expect(await backupNamed(name)).toBeUndefined();
  }, 120_000);
});

