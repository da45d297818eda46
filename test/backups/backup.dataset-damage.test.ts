/**
 * A type 1 (dataset) backup whose blocks rot on the backup pool is found by verify: on a real
 * zfs-fuse backup pool (a file vdev of its own), the backup's data blocks are overwritten in the
 * vdev file behind esnap's back (the pool exported meanwhile, so no cached copy answers the
 * next read). Verify's full `zfs send` then fails on the blocks' checksums (zfs-fuse: "cannot send
 * …: Input/output error"), the backup becomes damaged (status 5), the `backup_damaged` alert goes
 * out, and a restore of it is refused.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { platformUnavailable } from '../platform/require.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';

const MB = 1024 * 1024;
const runner = new NodeCommandRunner();
/** 32 bytes repeated over the disk's first MiB: found again in the backup pool's vdev, and only there. */
const MARKER = Buffer.from('esnap-rot-marker-0123456789abcde');

async function cmd(...argv: string[]): Promise<string> {
  const r = await runner.run(argv, { env: { LC_ALL: 'C' } });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('type 1 verify finds blocks damaged on the backup pool (zfs-fuse)', async () => {
  const reason = await zfsUnavailable();
  if (reason !== null) return platformUnavailable('type 1 verify needs zfs-fuse', reason);

  let src: ZfsPool;
  let bkp: ZfsPool;
  let s: TestServer & { cleanup(): Promise<void> };
  let hook: http.Server;
  const alerts: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    hook = http.createServer((req, res) => {
      let data = '';
      req.on('data', (c: Buffer) => (data += c.toString()));
      req.on('end', () => {
        alerts.push(JSON.parse(data) as Record<string, unknown>);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((res) => hook.listen(0, '127.0.0.1', res));
    src = await makeZfsPool(128);
    bkp = await makeZfsPool(128);
    await cmd('zfs', 'create', `${src.name}/vms`);
    await cmd('zfs', 'create', `${bkp.name}/bkp`);
    s = await withServer('sqlite', {
      alertWebhook: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`,
      storages: () => [
        { name: 'default', driver: 'zfs', dataset: `${src.name}/vms` },
        { name: 'backup', driver: 'zfs', dataset: `${bkp.name}/bkp` },
      ],
    });
    expect((await s.req('POST', '/api/vm/web01/define/', { body: {} })).status).toBe(201);
    const d = await s.req('POST', '/api/vm/web01/define/disk/1/', { body: { size: 8, zpool: 'default' } });
    expect(d.status, d.text).toBe(201);
    const image = `${(await cmd('zfs', 'get', '-Hp', '-o', 'value', 'mountpoint', `${src.name}/vms/${String(d.body.result.path)}`)).trim()}/disk.img`;
    const fh = await open(image, 'r+');
    const data = Buffer.alloc(MB);
    for (let i = 0; i < MB; i += MARKER.length) MARKER.copy(data, i);
    await fh.write(data, 0, MB, 0);
    await fh.sync();
    await fh.close();
    const def = await s.req('POST', '/api/vm/web01/define/backup/daily', { body: { type: 1, node: s.node, zpool: 'backup', schedule: '0 2 * * *', retention: 3 } });
    expect(def.status, def.text).toBe(201);
  }, 180_000);
  afterAll(async () => {
    await s?.cleanup();
    await src?.cleanup();
    await bkp?.cleanup();
    await new Promise((res) => hook?.close(res));
  });

  it('verify: ok, then damaged (status 5) with the alert after the blocks were overwritten in the vdev', async () => {
    const c = await s.stream('POST', '/api/vm/web01/backup/daily', { body: {} });
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    const name = (await s.req('GET', '/api/vm/web01/backup')).body.result[0] as string;
    const ok = await s.stream('PUT', `/api/vm/web01/backup/${name}`, { body: { verify: true } });
    expect(ok.finalStatus, JSON.stringify(ok.final)).toBe(200);

    // Behind esnap's back: the pool out, the marker's blocks overwritten in its vdev, the pool in again.
    await cmd('zpool', 'export', bkp.name);
    const vdev = await readFile(bkp.vdev);
    const hits: number[] = [];
    for (let at = vdev.indexOf(MARKER); at >= 0; at = vdev.indexOf(MARKER, at + 4096)) hits.push(at);
    // The MiB of data was received once (records of up to 128 KiB), in this pool only.
    expect(hits.length).toBeGreaterThan(0);
    const fh = await open(bkp.vdev, 'r+');
    for (const at of hits) await fh.write(Buffer.from('ROT!'), 0, 4, at + 64);
    await fh.close();
    await cmd('zpool', 'import', '-d', dirname(bkp.vdev), bkp.name);

    const bad = await s.stream('PUT', `/api/vm/web01/backup/${name}`, { body: { verify: true } });
    expect(bad.finalStatus, JSON.stringify(bad.final)).toBe(400);
    expect(JSON.stringify(bad.final)).toMatch(/Input\/output error/);
    expect((await s.req('GET', `/api/vm/web01/backup/${name}`)).body.result.status).toBe(5);
    // The alert is delivered after the task's commit; waited for, bounded.
    for (let i = 0; i < 200 && !alerts.some((a) => a['type'] === 'backup_damaged'); i++) await new Promise((res) => setTimeout(res, 50));
    expect(alerts.find((a) => a['type'] === 'backup_damaged')).toMatchObject({ priority: 'ERROR', hostname: 'web01', disk_id: 1, snapnames: [name], define: 'daily' });
    const r = await s.req('PUT', `/api/vm/web01/backup/${name}`, { body: { target_hostname_or_uuid: 'web01', target_disk_id: 1 } });
    expect([r.status, r.body.detail]).toEqual([417, 'VM backup status is not OK']);
  }, 300_000);
});
