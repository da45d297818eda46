/**
 * The set-up of the cluster backup tests (backup.cluster.test.ts, backup.cluster-faults.test.ts):
 * an esnap server on a PostgreSQL schema of its own and two agents,
 *
 * - compute1: an in-process AgentRuntime with a file storage `default` and whatever `compute`
 *   storages the test adds (qcow2, zfs-fuse, btrfs), behind a private sshd on a loopback port (its
 *   own host key, the authorized-keys file compute1's agent maintains, the built forced command);
 * - backup1: a backup node (ESNAP_BACKUP_NODE=1) with a file storage `default` (VMs of its own), a
 *   file storage `backup` (the restic repository) and the `backup` storages the test adds; in
 *   process, or (`backupAsProcess`) a real `esnap agent` child process that a test can SIGKILL and
 *   start again on the same data dir.
 *
 * Example:
 *   const tempDir = useTempDirs();
 *   let c: BackupCluster;
 *   beforeAll(async () => { c = await startBackupCluster(await tempDir('esnap-x-'), { backupAsProcess: true }); });
 *   afterAll(() => c?.stop());
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { expect } from 'vitest';
import { AgentRuntime } from '../../src/agent/agent-runtime.js';
import type { StorageConfig } from '../../src/storage/drivers.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { parseSshAddress } from '../../src/transport/ssh-address.js';
import { makeNodeVm, newClusterDb, silentLogger, startClusterServer, waitFor, waitNodeOnline, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';
import type { VmFixture } from '../helpers/fixtures.js';
import { spawnEsnap, waitOutput, type EsnapProcess } from '../helpers/esnap-process.js';
import { startSshd, waitForProcessesGone, type PrivateSshd } from '../platform/sshd.js';

export const MiB = 1024 * 1024;
export const runner = new NodeCommandRunner();
export const SSH_SERVE_BIN = join(process.cwd(), 'dist/src/bin/esnap-ssh-serve.js');

export async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

export async function must(argv: string[]): Promise<void> {
  const r = await runner.run(argv, { timeoutMs: 120_000 });
  expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
}

/** The SHA-256 of a qcow2 image's guest bytes (its raw export). */
export async function guestSha(image: string, dir: string): Promise<string> {
  const raw = join(dir, `raw-${Date.now()}.img`);
  await must(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', image, raw]);
  try {
    return await sha256(raw);
  } finally {
    await rm(raw, { force: true });
  }
}

/** `zfs destroy -r -f`, retried while zfs-fuse says busy (its daemon winding down a mount or a receive). */
export async function destroyDataset(name: string): Promise<void> {
  for (let i = 0; i < 120; i++) {
    const r = await runner.run(['zfs', 'destroy', '-r', '-f', name]);
    if (r.code === 0 || /does not exist/.test(r.stderr)) return;
    await new Promise((res) => setTimeout(res, 500));
  }
}

export interface BackupClusterOptions {
  /** Storages of compute1 besides its file storage `default`. */
  readonly compute?: readonly StorageConfig[];
  /** Storages of backup1 besides `default` and `backup` (both file storages). */
  readonly backup?: readonly StorageConfig[];
  /** backup1 as a real `esnap agent` child process (SIGKILL-able) instead of an in-process agent. */
  readonly backupAsProcess?: boolean;
}

export interface BackupCluster {
  readonly root: string;
  readonly db: ClusterDb;
  readonly server: ClusterServer;
  readonly sshd: PrivateSshd;
  readonly compute: AgentRuntime;
  /** backup1's agent when it runs in this process. */
  readonly backupAgent: AgentRuntime | null;
  /** backup1's agent process (backupAsProcess), the current one: restartBackup() replaces it. */
  backupProcess(): EsnapProcess | null;
  /** backupAsProcess: starts backup1's agent again on the same data dir, and waits until it is registered and trusts compute1. */
  restartBackup(): Promise<void>;
  /** Folders of backup1: its data dir (backupAsProcess: ESNAP_DATA_DIR; keys in `keys`) and its restic storage's root. */
  readonly backupData: string;
  readonly backupKeys: string;
  readonly resticRoot: string;
  /** The id of a node's storage. */
  storageId(node: string, storage: string): Promise<number>;
  /** A VM with one disk of `sizeMb` on a node (its `default` file storage). */
  vm(node: string, hostname: string, sizeMb: number): Promise<VmFixture>;
  /** Moves a VM's first disk (rows only) onto another storage of its node and removes its file; the disk's path. */
  moveDisk(vm: VmFixture, node: string, storage: string): Promise<string>;
  stop(): Promise<void>;
}

/** Text in the command line of the backup agent that tells it from every other `esnap agent`. */
const AGENT_MARK = 'backup1-agent-data';

export async function startBackupCluster(root: string, opts: BackupClusterOptions = {}): Promise<BackupCluster> {
  const db = await newClusterDb();
  const server = await startClusterServer(db, { streamTimeoutS: 300, nodeSilenceS: 6 });
  const computeSsh = join(root, 'compute-ssh');
  const backupSsh = join(root, 'backup-ssh');
  const backupData = join(root, AGENT_MARK);
  const backupKeys = opts.backupAsProcess ? join(backupData, 'backup-keys') : join(root, 'backup-keys');
  for (const d of ['compute-storage', 'backup-default', 'backup-restic']) await mkdir(join(root, d), { recursive: true });
  await mkdir(backupData, { recursive: true });
  for (const st of [...(opts.compute ?? []), ...(opts.backup ?? [])]) if (st.root) await mkdir(st.root, { recursive: true });
  const sshd = await startSshd({ dir: join(root, 'sshd'), authorizedKeysFile: join(computeSsh, 'authorized_keys') });
  const compute = await AgentRuntime.start({
    databaseUrl: db.agentUrl(),
    bossSchema: db.bossSchema,
    node: 'compute1',
    storages: [{ name: 'default', driver: 'file', root: join(root, 'compute-storage') }, ...(opts.compute ?? [])],
    heartbeatS: 1,
    log: silentLogger,
    ssh: { dir: computeSsh, address: parseSshAddress(`${sshd.user}@127.0.0.1:${sshd.port}`)!, serveScript: SSH_SERVE_BIN },
    backupNode: false,
  });
  const backupStorages: StorageConfig[] = [
    { name: 'default', driver: 'file', root: join(root, 'backup-default') },
    { name: 'backup', driver: 'file', root: join(root, 'backup-restic') },
    ...(opts.backup ?? []),
  ];
  let backupAgent: AgentRuntime | null = null;
  let proc: EsnapProcess | null = null;

  const startProcess = async (): Promise<void> => {
    const p = spawnEsnap(['agent'], {
      ESNAP_DATABASE_URL: db.agentUrl(),
      ESNAP_NODE: 'backup1',
      ESNAP_STORAGES: JSON.stringify(backupStorages),
      ESNAP_NODE_SILENCE_S: '3',
      ESNAP_DATA_DIR: backupData,
      ESNAP_BACKUP_NODE: '1',
      ESNAP_SSH_DIR: backupSsh,
      // backup1's own sshd is not needed: nobody pulls from it.
      ESNAP_NODE_ADDRESS: 'root@127.0.0.1:1',
    });
    proc = p;
    await waitOutput(p, 'agent started', 60_000);
    // The trust set the server sends after the registration names compute1's sshd.
    await waitFor('backup1 trusts compute1', async () => {
      if (!p.alive()) throw new Error(`backup1's agent exited: ${p.output()}`);
      return /"hosts":[1-9].*"msg":"SSH trust updated"/.test(p.output());
    }, 60_000, 100);
  };

  try {
    if (opts.backupAsProcess) {
      await startProcess();
    } else {
      backupAgent = await AgentRuntime.start({
        databaseUrl: db.agentUrl(),
        bossSchema: db.bossSchema,
        node: 'backup1',
        storages: backupStorages,
        heartbeatS: 1,
        log: silentLogger,
        ssh: { dir: backupSsh, address: parseSshAddress('root@127.0.0.1:1')!, serveScript: SSH_SERVE_BIN },
        backupNode: true,
        backupKeysDir: backupKeys,
      });
      const b = backupAgent;
      await waitFor('backup1 knows compute1', async () => b.ssh!.addressOf('compute1') !== null, 30_000);
    }
    for (const n of ['compute1', 'backup1']) await waitNodeOnline(server, n, 60_000);
    // compute1 authorizes backup1's key (forced command).
    const backupKey = (await readFile(join(backupSsh, 'id_ed25519.pub'), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    await waitFor('compute1 authorizes backup1', async () => (await readFile(join(computeSsh, 'authorized_keys'), 'utf8').catch(() => '')).includes(backupKey), 30_000);
  } catch (err) {
    await (proc as EsnapProcess | null)?.stop('SIGKILL');
    await backupAgent?.stop();
    await compute.stop();
    await sshd.stop();
    await server.close();
    await db.drop();
    throw err;
  }

  const storageId = async (node: string, storage: string): Promise<number> => {
    const row = await server.runtime.ctx.db
      .selectFrom('node_storage')
      .innerJoin('node', 'node.id', 'node_storage.node_id')
      .select('node_storage.id')
      .where('node.hostname', '=', node)
      .where('node_storage.name', '=', storage)
      .executeTakeFirstOrThrow();
    return row.id;
  };

  return {
    root,
    db,
    server,
    sshd,
    compute,
    backupAgent,
    backupData,
    backupKeys,
    resticRoot: join(root, 'backup-restic'),
    backupProcess: () => proc,
    async restartBackup() {
      if (!opts.backupAsProcess) throw new Error('restartBackup() needs backupAsProcess');
      if (proc?.alive()) throw new Error('backup1 still runs');
      await startProcess();
      await waitNodeOnline(server, 'backup1', 60_000);
    },
    storageId,
    vm: (node, hostname, sizeMb) => makeNodeVm(server, node, hostname, { disks: [sizeMb] }),
    async moveDisk(vm, node, storage) {
      const kdb = server.runtime.ctx.db;
      await kdb.updateTable('vm_disk').set({ storage_id: await storageId(node, storage) }).where('vm_uuid', '=', vm.uuid).execute();
      await rm(vm.diskPaths[0]!);
      return (await kdb.selectFrom('vm_disk').select('path').where('vm_uuid', '=', vm.uuid).executeTakeFirstOrThrow()).path;
    },
    async stop() {
      await (proc as EsnapProcess | null)?.stop('SIGKILL');
      await backupAgent?.stop();
      await compute.stop();
      await sshd.stop();
      await waitForProcessesGone([computeSsh, backupSsh]);
      await server.close();
      await db.drop();
    },
  };
}

/**
 * Processes (other than this one and the private sshd's listener) whose command line or
 * environment names `marker`: what a cut transfer could leave streaming (restic names its
 * repository only in its environment).
 */
export async function processesNaming(marker: string, except: readonly number[] = []): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid || except.includes(pid)) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ').trim();
    // The listener (it retitles itself `sshd: /usr/sbin/sshd -D … [listener] …`).
    if (cmd === '' || cmd.startsWith('/usr/sbin/sshd -D') || /^sshd: \/usr\/sbin\/sshd -D .*\[listener\]/.test(cmd)) continue;
    const env = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    if (cmd.includes(marker) || env.includes(marker)) found.push(`${pid}: ${cmd}`);
  }
  return found;
}
