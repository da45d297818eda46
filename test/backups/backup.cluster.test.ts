/**
 * The done-when as one flow, on PostgreSQL with two agents (two nodes) and real engines:
 *
 * - compute1: a qcow2 storage (web01's disk) and a file storage (web03's) behind a private sshd on a loopback port (its own host key, the
 *   authorized-keys file compute1's agent maintains, the built forced command);
 * - backup1: a backup node (ESNAP_BACKUP_NODE=1) with a restic storage `backup` and a file storage
 *   `default` for a VM of its own.
 *
 * A type 2 backup of a qcow2 disk of compute1 is made through the API: backup1 pulls it over SSH
 * (`send image`) into restic. It is restored through the API over SSH into a second VM on compute1
 * (`receive`, announced by the server), then compute1's qcow2 storage is destroyed and the backup is
 * restored on backup1 into a VM there: the bytes are those of the snapshot the backup read.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRuntime } from '../../src/agent/agent-runtime.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { parseSshAddress } from '../../src/transport/ssh-address.js';
import { makeNodeVm, newClusterDb, silentLogger, startClusterServer, waitFor, waitNodeOnline, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';
import { useTempDirs } from '../helpers/temp-dirs.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';
import { qemuUnavailable } from '../platform/qemu.js';
import { startSshd, sshdUnavailable, waitForProcessesGone, type PrivateSshd } from '../platform/sshd.js';

const MiB = 1024 * 1024;
const runner = new NodeCommandRunner();
const SSH_SERVE_BIN = join(process.cwd(), 'dist/src/bin/esnap-ssh-serve.js');

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

async function must(argv: string[]): Promise<void> {
  const r = await runner.run(argv, { timeoutMs: 120_000 });
  expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
}

/** The SHA-256 of a qcow2 image's guest bytes (its raw export). */
async function guestSha(image: string, dir: string): Promise<string> {
  const raw = join(dir, `raw-${Date.now()}.img`);
  await must(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', image, raw]);
  try {
    return await sha256(raw);
  } finally {
    await rm(raw, { force: true });
  }
}

describe('backups in a cluster: type 2 from qcow2 over SSH, restored on both nodes', async () => {
  const reason = (await sshdUnavailable()) ?? (await resticUnavailable()) ?? (await qemuUnavailable());
  if (reason !== null) return platformUnavailable('cluster backups over SSH', reason);

  const tempDir = useTempDirs();
  let db: ClusterDb;
  let server: ClusterServer;
  let sshd: PrivateSshd;
  const agents: AgentRuntime[] = [];
  let root: string;

  beforeAll(async () => {
    root = await tempDir('esnap-bkp-cluster-');
    db = await newClusterDb();
    server = await startClusterServer(db, { streamTimeoutS: 300 });
    const computeSsh = join(root, 'compute-ssh');
    sshd = await startSshd({ dir: join(root, 'sshd'), authorizedKeysFile: join(computeSsh, 'authorized_keys') });
    for (const d of ['compute-storage', 'compute-qcow', 'backup-default', 'backup-restic', 'backup-keys']) await mkdir(join(root, d), { recursive: true });
    agents.push(
      await AgentRuntime.start({
        databaseUrl: db.agentUrl(),
        bossSchema: db.bossSchema,
        node: 'compute1',
        storages: [
          { name: 'default', driver: 'file', root: join(root, 'compute-storage') },
          { name: 'qcow', driver: 'qcow2', root: join(root, 'compute-qcow') },
        ],
        heartbeatS: 1,
        log: silentLogger,
        ssh: { dir: computeSsh, address: parseSshAddress(`${sshd.user}@127.0.0.1:${sshd.port}`)!, serveScript: SSH_SERVE_BIN },
        backupNode: false,
      }),
      await AgentRuntime.start({
        databaseUrl: db.agentUrl(),
        bossSchema: db.bossSchema,
        node: 'backup1',
        storages: [
          { name: 'default', driver: 'file', root: join(root, 'backup-default') },
          { name: 'backup', driver: 'file', root: join(root, 'backup-restic') },
        ],
        heartbeatS: 1,
        log: silentLogger,
        // backup1's own sshd is not needed: nobody pulls from it.
        ssh: { dir: join(root, 'backup-ssh'), address: parseSshAddress('root@127.0.0.1:1')!, serveScript: SSH_SERVE_BIN },
        backupNode: true,
        backupKeysDir: join(root, 'backup-keys'),
      }),
    );
    for (const n of ['compute1', 'backup1']) await waitNodeOnline(server, n);
    const backup = agents[1]!;
    // compute1 authorizes backup1's key (forced command) and backup1 pins compute1's host key.
    await waitFor('compute1 authorizes backup1', async () => (await readFile(join(computeSsh, 'authorized_keys'), 'utf8').catch(() => '')).includes(backup.ssh!.registration.publicKey), 30_000);
    await waitFor('backup1 knows compute1', async () => backup.ssh!.addressOf('compute1') !== null, 30_000);
  }, 180_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await sshd?.stop();
    await waitForProcessesGone([join(root ?? '/nonexistent', 'compute-ssh')]);
    await server?.close();
    await db?.drop();
  });

  it('backs up over SSH, restores over SSH on the source node, and on the backup node after the source storage is gone', async () => {
    const s = server;
    const web01 = await makeNodeVm(s, 'compute1', 'web01', { disks: [32] });
    const web03 = await makeNodeVm(s, 'compute1', 'web03', { disks: [32] });
    const web02 = await makeNodeVm(s, 'backup1', 'web02', { disks: [32] });
    // web01's disk moves to compute1's qcow2 storage: a real qcow2 image with data in it.
    const db = s.runtime.ctx.db;
    const qcow = await db.selectFrom('node_storage').innerJoin('node', 'node.id', 'node_storage.node_id').select('node_storage.id').where('node.hostname', '=', 'compute1').where('node_storage.name', '=', 'qcow').executeTakeFirstOrThrow();
    await db.updateTable('vm_disk').set({ storage_id: qcow.id }).where('vm_uuid', '=', web01.uuid).execute();
    await rm(web01.diskPaths[0]!);
    const src = join(root, 'compute-qcow', (await db.selectFrom('vm_disk').select('path').where('vm_uuid', '=', web01.uuid).executeTakeFirstOrThrow()).path);
    await must(['qemu-img', 'create', '-q', '-f', 'qcow2', src, `${32 * MiB}`]);
    await must(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0xa5 7M 3M', '-c', 'write -P 0x11 31M 1M', src]);
    const original = await guestSha(src, root);

    const def = await s.req('POST', '/api/vm/web01/define/backup/daily', { body: { type: 2, node: 'backup1', zpool: 'backup', schedule: '0 2 * * *', retention: 3 } });
    expect(def.status, def.text).toBe(201);
    const c = await s.stream('POST', '/api/vm/web01/backup/daily', { body: {} });
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    const list = await s.req('GET', '/api/vm/web01/backup', { query: { full: 'true' } });
    expect(list.body.result).toHaveLength(1);
    const b = list.body.result[0] as { name: string; node: string; status: number; size: number };
    expect(b).toMatchObject({ node: 'backup1', status: 1, size: 32 * MiB });
    const row = await s.runtime.ctx.db.selectFrom('backup').select('checksum').where('name', '=', b.name).executeTakeFirstOrThrow();
    expect(row.checksum).toBe(original);

    // Restore into web03 on compute1: backup1 streams `restic dump` over SSH into compute1's receive.
    const r1 = await s.stream('PUT', `/api/vm/web01/backup/${b.name}`, { body: { target_hostname_or_uuid: 'web03', target_disk_id: 1 } });
    expect(r1.finalStatus, JSON.stringify(r1.final)).toBe(200);
    expect(await sha256(web03.diskPaths[0]!)).toBe(original);

    // The source storage is lost; the backup (on backup1) is still listed and restorable on backup1.
    await rm(join(root, 'compute-qcow'), { recursive: true, force: true });
    const r2 = await s.stream('PUT', `/api/vm/web01/backup/${b.name}`, { body: { target_hostname_or_uuid: 'web02', target_disk_id: 1 } });
    expect(r2.finalStatus, JSON.stringify(r2.final)).toBe(200);
    expect(await sha256(web02.diskPaths[0]!)).toBe(original);

    // Verify re-reads the backup on backup1.
    const v = await s.stream('PUT', `/api/vm/web01/backup/${b.name}`, { body: { verify: true } });
    expect(v.finalStatus, JSON.stringify(v.final)).toBe(200);
  }, 600_000);
});
