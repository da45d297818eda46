/**
 * Type 2 (restic) backups of a disk on a zfs storage, on a real zfs-fuse pool with real restic:
 * zfs-fuse has no `.zfs/snapshot` folder, so the driver reads a snapshot's `disk.img` through a
 * temporary clone of it (`<storage>/.esnap-read-<hex>`), which restic and the hasher read as a
 * file; the clone is gone once the backup has ended. Backup, then restore into another zfs disk:
 * identical bytes. A reader killed with SIGKILL while it holds the clone (the `send image` of
 * esnap's forced command, a real process) leaves the clone; the driver's init() removes it, and
 * the snapshot it was made from can be destroyed again. The forced command's `send image` (a
 * backup of this disk from another node) reads the same clone and removes it when done.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { ZfsDriver } from '../../src/storage/zfs/zfs.driver.js';
import { serve } from '../../src/transport/ssh-serve.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';

const MB = 1024 * 1024;
const runner = new NodeCommandRunner();
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const ESNAP_BIN = join(import.meta.dirname, '../../dist/src/bin/esnap.js');

async function zfs(...argv: string[]): Promise<string> {
  const r = await runner.run(['zfs', ...argv], { env: { LC_ALL: 'C' } });
  if (r.code !== 0) throw new Error(`zfs ${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('type 2 (restic) backups of a zfs disk, embedded, zfs-fuse', async () => {
  const reason = (await zfsUnavailable()) ?? (await resticUnavailable());
  if (reason !== null) return platformUnavailable('type 2 backups of zfs disks need zfs-fuse and restic', reason);

  let pool: ZfsPool;
  let s: TestServer & { cleanup(): Promise<void> };
  const paths: Record<string, string> = {};
  const image = async (vm: string): Promise<string> => join((await zfs('get', '-Hp', '-o', 'value', 'mountpoint', `${pool.name}/vms/${paths[vm]!}`)).trim(), 'disk.img');
  /** Datasets and snapshots below the storage besides the disks themselves. */
  const extras = async (): Promise<string[]> =>
    (await zfs('list', '-H', '-o', 'name', '-r', '-t', 'all', `${pool.name}/vms`))
      .split('\n')
      .filter((n) => n !== '' && n !== `${pool.name}/vms` && !Object.values(paths).some((p) => n === `${pool.name}/vms/${p}`));

  beforeAll(async () => {
    pool = await makeZfsPool(256);
    await zfs('create', `${pool.name}/vms`);
    s = await withServer('sqlite', {
      storages: (root) => [
        { name: 'default', driver: 'zfs', dataset: `${pool.name}/vms` },
        { name: 'backup', driver: 'file', root: join(root, 'backup') },
      ],
    });
    for (const vm of ['web01', 'web02']) {
      expect((await s.req('POST', `/api/vm/${vm}/define/`, { body: {} })).status).toBe(201);
      const d = await s.req('POST', `/api/vm/${vm}/define/disk/1/`, { body: { size: 16, zpool: 'default' } });
      expect(d.status, d.text).toBe(201);
      paths[vm] = d.body.result.path as string;
    }
    const def = await s.req('POST', '/api/vm/web01/define/backup/daily', { body: { type: 2, node: s.node, zpool: 'backup', schedule: '0 2 * * *', retention: 3 } });
    expect(def.status, def.text).toBe(201);
  }, 180_000);
  afterAll(async () => {
    await s?.cleanup();
    await pool?.cleanup();
  });

  it('backs up through a clone of the snapshot, leaves nothing behind, and restores identical bytes', async () => {
    const fh = await open(await image('web01'), 'r+');
    for (let i = 0; i < 16; i += 3) await fh.write(Buffer.alloc(256 * 1024, i + 1), 0, 256 * 1024, i * MB);
    await fh.sync();
    await fh.close();
    const original = await readFile(await image('web01'));

    const c = await s.stream('POST', '/api/vm/web01/backup/daily', { body: {} });
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    const b = (await s.req('GET', '/api/vm/web01/backup', { query: { full: 'true' } })).body.result[0];
    expect(b).toMatchObject({ status: 1, size: 16 * MB, type: 2 });
    const row = await s.runtime.ctx.db.selectFrom('backup').selectAll().executeTakeFirstOrThrow();
    expect(row.checksum).toBe(sha(original));
    // Neither the read clone nor the source snapshot is left on the storage.
    expect(await extras()).toEqual([]);

    const v = await s.stream('PUT', `/api/vm/web01/backup/${String(b.name)}`, { body: { verify: true } });
    expect(v.finalStatus, JSON.stringify(v.final)).toBe(200);

    const r = await s.stream('PUT', `/api/vm/web01/backup/${String(b.name)}`, { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
    expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
    expect(sha(await readFile(await image('web02')))).toBe(sha(original));
  }, 300_000);

  it("the forced command's send image of a zfs disk (a backup from another node) streams the clone, then removes it", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-zfssend-'));
    try {
      const disk = paths['web02']!;
      await zfs('snapshot', `${pool.name}/vms/${disk}@is-998`);
      const expected = sha(await readFile(await image('web02')));
      const out = new PassThrough();
      const err = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (c: Buffer) => chunks.push(c));
      let stderr = '';
      err.on('data', (c: Buffer) => (stderr += c.toString()));
      const config = { node: s.node, storages: [{ name: 'default', driver: 'zfs', dataset: `${pool.name}/vms` }], announcedDir: join(dir, 'announced') };
      const code = await serve(config, `send image default ${disk} is-998`, { stdin: new PassThrough(), stdout: out, stderr: err, runner, now: () => new Date() });
      expect(code, stderr).toBe(0);
      expect(stderr).toBe(`esnap: image ${16 * MB} bytes sha256 ${expected}\n`);
      expect(sha(Buffer.concat(chunks))).toBe(expected);
      expect(await extras()).toEqual([`${pool.name}/vms/${disk}@is-998`]);
      await zfs('destroy', `${pool.name}/vms/${disk}@is-998`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it('a reader killed with SIGKILL while it holds the clone: init() removes the clone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-zfsread-'));
    try {
      const fh = await open(await image('web02'), 'r+');
      await fh.write(Buffer.alloc(8 * MB, 9), 0, 8 * MB, 0);
      await fh.close();
      await zfs('snapshot', `${pool.name}/vms/${paths['web02']!}@is-999`);
      const config = join(dir, 'serve.json');
      await writeFile(config, JSON.stringify({ node: s.node, storages: [{ name: 'default', driver: 'zfs', dataset: `${pool.name}/vms` }], announcedDir: join(dir, 'announced') }));
      // Nothing reads its stdout: the sender blocks once the pipe is full, the clone open.
      const child = spawn(process.execPath, [ESNAP_BIN, 'ssh-serve', config], {
        env: { ...process.env, SSH_ORIGINAL_COMMAND: `send image default ${paths['web02']!} is-999` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let gone = false;
      const exited = new Promise<void>((res) => child.once('exit', () => res()));
      void exited.then(() => (gone = true));
      let clone: string | undefined;
      for (let i = 0; i < 600 && clone === undefined && !gone; i++) {
        clone = (await extras()).find((n) => /\/\.esnap-read-[0-9a-f]{12}$/.test(n));
        if (clone === undefined) await new Promise((res) => setTimeout(res, 100));
      }
      expect(clone, 'the sender made no clone').toBeDefined();
      // Until it has begun sending (bytes in the pipe), then SIGKILL.
      await new Promise<void>((res) => child.stdout.once('readable', () => res()));
      child.kill('SIGKILL');
      await exited;
      expect(await extras()).toContain(clone);
      await expect(zfs('destroy', `${pool.name}/vms/${paths['web02']!}@is-999`)).rejects.toThrow(/dependent clones/);

      const driver = new ZfsDriver({ dataset: `${pool.name}/vms`, runner });
      await driver.init();
      expect(await extras()).toEqual([`${pool.name}/vms/${paths['web02']!}@is-999`]);
      await driver.destroy({ path: paths['web02']! }, ['is-999']);
      expect(await extras()).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
