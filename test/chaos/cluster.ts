/**
 * The chaos run's cluster: a private PostgreSQL, two `esnap serve` processes on fixed loopback
 * ports and two `esnap agent` processes (node1, node2), each in a process group of its own so a
 * kill -9 takes everything it started. Every node has four storages: `file` and `qcow2` in a
 * folder, `btrfs` on a loop filesystem and `zfs` on a zfs-fuse pool (one of each shared by the two
 * nodes, a folder or dataset per node). node1 is also a backup node (ESNAP_BACKUP_NODE=1) with a fifth
 * storage `backup` (a folder holding its restic repository): backups of node1's disks go to node1
 * itself, through local pipes (no SSH between the nodes). With `libvirt`, node2's agent runs with
 * ESNAP_HYPERVISOR=libvirt and the run's libvirt domains (chaos.ts) are its VMs of one client each.
 *
 * Used by test/chaos/chaos.ts only.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { freePort, sleep, spawnEsnap, waitOutput, type EsnapProcess } from '../helpers/esnap-process.js';
import { PrivatePostgres } from '../helpers/private-pg.js';
import { makeLoopFs, type LoopFs } from '../platform/loopfs.js';
import { makeZfsPool, type ZfsPool } from '../platform/zfs.js';
import type { StorageConfig } from '../../src/storage/drivers.js';
import { LIBVIRT_URI } from '../platform/libvirt.js';

export const CHAOS_KEY = 'chaos-admin-key-0123456789abcdef0123';
export const NODES = ['node1', 'node2'] as const;
export const STORAGE_KINDS = ['file', 'qcow2', 'btrfs', 'zfs'] as const;
export type StorageKind = (typeof STORAGE_KINDS)[number];
/** The backup node, and its backup storage's name (see storagesOf). */
export const BACKUP_NODE = 'node1';
export const BACKUP_STORAGE = 'backup';
/** The node whose agent runs with ESNAP_HYPERVISOR=libvirt when the run has libvirt domains. */
export const LIBVIRT_NODE = 'node2';

const runner = new NodeCommandRunner();

export interface Proc {
  readonly name: string;
  p: EsnapProcess | null;
  /** Set while the process is down on purpose (killed, not yet back), with the instant it went down. */
  downSince: number | null;
}

export class ChaosCluster {
  readonly servers: Array<Proc & { port: number }> = [];
  readonly agents: Proc[] = [];
  /** Fault windows [start, end] per kind of trouble, for excusing errors that landed inside one. */
  readonly windows: Array<{ kind: string; target: string; start: number; end: number | null }> = [];
  private constructor(
    readonly dir: string,
    readonly pg: PrivatePostgres,
    readonly btrfs: LoopFs,
    readonly zfs: ZfsPool,
    /** LIBVIRT_NODE's agent discovers the machine's libvirt domains (qemu:///system). */
    readonly libvirt: boolean,
  ) {}

  static async start(log: (l: string) => void, opts: { libvirt?: boolean } = {}): Promise<ChaosCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-chaos-'));
    const pg = await PrivatePostgres.create();
    const btrfs = await makeLoopFs('btrfs', 768);
    const zfs = await makeZfsPool(384);
    const c = new ChaosCluster(dir, pg, btrfs, zfs, opts.libvirt ?? false);
    try {
      await c.init();
    } catch (err) {
      await c.stop();
      throw err;
    }
    log(`chaos: cluster up in ${dir} (postgres :${pg.port}, servers :${c.servers.map((s) => s.port).join(' :')}, btrfs ${btrfs.device}, zfs ${zfs.name})`);
    return c;
  }

  private async init(): Promise<void> {
    const { dir, btrfs, zfs } = this;
    const c = this;
    for (const node of NODES) {
      await zfsRun(['create', `${zfs.name}/${node}`]);
      for (const k of ['file', 'qcow2', BACKUP_STORAGE] as const) await mkdir(join(dir, node, k), { recursive: true });
      await mkdir(join(btrfs.mountpoint, node), { recursive: true });
    }
    for (let i = 0; i < 2; i++) c.servers.push({ name: `server${i + 1}`, p: null, downSince: null, port: await freePort() });
    for (const node of NODES) c.agents.push({ name: node, p: null, downSince: null });
    // The first server migrates the database; the second and the agents start after it.
    await c.startServer(0);
    await c.startServer(1);
    for (let i = 0; i < c.agents.length; i++) await c.startAgent(i);
  }

  storagesOf(node: string): StorageConfig[] {
    return [
      { name: 'file', driver: 'file', root: join(this.dir, node, 'file') },
      { name: 'qcow2', driver: 'qcow2', root: join(this.dir, node, 'qcow2') },
      { name: 'btrfs', driver: 'btrfs', root: join(this.btrfs.mountpoint, node) },
      { name: 'zfs', driver: 'zfs', dataset: `${this.zfs.name}/${node}` },
      ...(node === BACKUP_NODE ? [{ name: BACKUP_STORAGE, driver: 'file', root: join(this.dir, node, BACKUP_STORAGE) }] : []),
    ];
  }

  /** The restic repository of the backup storage, and the file holding its password. */
  resticRepo(): { repo: string; passwordFile: string } {
    return {
      repo: join(this.dir, BACKUP_NODE, BACKUP_STORAGE, '.esnap-restic'),
      passwordFile: join(this.dir, `${BACKUP_NODE}-data`, 'backup-keys', `${BACKUP_STORAGE}.restic-password`),
    };
  }

  url(i: number): string {
    return `http://127.0.0.1:${this.servers[i]!.port}`;
  }

  async startServer(i: number): Promise<void> {
    const s = this.servers[i]!;
    const p = spawnEsnap(
      ['serve'],
      {
        ESNAP_LISTEN: `127.0.0.1:${s.port}`,
        ESNAP_DATA_DIR: join(this.dir, s.name),
        ESNAP_DATABASE_URL: this.pg.url(),
        ESNAP_ADMIN_API_KEY: CHAOS_KEY,
        ESNAP_LOCAL_AGENT: '0',
        ESNAP_AGENT_DEADLINE_S: '30',
        ESNAP_NODE_SILENCE_S: '30',
        ESNAP_STREAM_TIMEOUT_S: '60',
      },
      { group: true },
    );
    s.p = p;
    await waitOutput(p, 'esnap listening', 60_000);
    s.downSince = null;
  }

  async startAgent(i: number, slowMs = 0): Promise<void> {
    const a = this.agents[i]!;
    const p = spawnEsnap(
      ['agent'],
      {
        ESNAP_DATABASE_URL: this.pg.url(),
        // A data dir per agent, as on two real machines: its run/children records are what a
        // restarted agent reaps, so two agents sharing one dir killed each other's storage commands
        // (seed 1, 1,000 operations, op 426: node2's agent restarted for a slow-disk fault killed the
        // `zfs snapshot` node1's agent was running, exit 137).
        ESNAP_DATA_DIR: join(this.dir, `${a.name}-data`),
        ESNAP_NODE: a.name,
        ESNAP_STORAGES: JSON.stringify(this.storagesOf(a.name)),
        ESNAP_NODE_SILENCE_S: '30',
        ESNAP_FREEZE_LIMIT_S: '3',
        ESNAP_BACKUP_NODE: a.name === BACKUP_NODE ? '1' : '0',
        ...(this.libvirt && a.name === LIBVIRT_NODE ? { ESNAP_HYPERVISOR: 'libvirt', ESNAP_LIBVIRT_URI: LIBVIRT_URI } : {}),
      },
      { group: true, ...(slowMs > 0 ? { slowMs } : {}) },
    );
    a.p = p;
    await waitOutput(p, 'agent started', 60_000);
    a.downSince = null;
  }

  /** kill -9 of the process group. */
  async kill(proc: Proc): Promise<void> {
    proc.downSince = Date.now();
    await proc.p?.killGroup();
  }

  /** Fault window bookkeeping: returns a function that closes the window. */
  open(kind: string, target: string): () => void {
    const w = { kind, target, start: Date.now(), end: null as number | null };
    this.windows.push(w);
    return () => {
      w.end = Date.now();
    };
  }

  async stop(): Promise<void> {
    for (const p of [...this.agents, ...this.servers]) await p.p?.killGroup().catch(() => undefined);
    await this.pg.destroy().catch(() => undefined);
    // zfs-fuse calls a pool busy for a while after its last user went away (killed agents' children).
    for (let i = 0; i < 30; i++) {
      const r = await runner.run(['zpool', 'destroy', '-f', this.zfs.name], { timeoutMs: 60_000 });
      if (r.code === 0 || /no such pool/.test(r.stderr)) break;
      await sleep(500);
    }
    await this.zfs.cleanup().catch((e: unknown) => console.warn('chaos: zfs cleanup', e));
    await this.btrfs.cleanup().catch((e: unknown) => console.warn('chaos: btrfs cleanup', e));
    await rm(this.dir, { recursive: true, force: true });
  }
}

export async function zfsRun(argv: string[]): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await runner.run(['zfs', ...argv], { env: { LC_ALL: 'C' }, timeoutMs: 60_000 });
    if (r.code === 0) return r.stdout;
    // zfs-fuse says "busy" for a moment after a dataset was used.
    if (!/busy/.test(r.stderr) || i > 20) throw new Error(`zfs ${argv.join(' ')}: ${r.stderr}`);
    await sleep(100);
  }
}
