/**
 * The chaos run (issue 18): a real cluster (test/chaos/cluster.ts) driven through N random
 * operations from several concurrent clients over the public API, while a fault injector driven by
 * the same seed kills servers and agents, restarts PostgreSQL, fills a storage to its free-space
 * floor, hangs a guest agent mid-freeze and slows an agent's storage. A model keeps what every disk
 * and snapshot must hold; a checker compares the model, the database and the storage at quiet
 * points and at the end, without running a sync first.
 *
 * The model: each client owns two VMs on one node (four disks each: file, qcow2, btrfs, zfs) and
 * does one operation at a time on them. Before each snapshot it writes a unique pattern into the
 * disk image (the VM is stopped), so the content of every snapshot and disk is known. An operation
 * whose answer was lost (connection reset, task status unreadable) is resolved later: a snapshot is
 * "maybe" until the checker sees whether its row exists, a disk's content may be one of several.
 *
 * Backups (on by default, `backups: false` leaves them out): node1 is the backup node, with a
 * restic (type 2) storage; the VMs of node1 have backup definitions on their disks 1 and 2 where
 * type 2 can read them (file, qcow2, btrfs). Their clients also back up (after writing a pattern,
 * as for a snapshot), restore a backup into a file or btrfs disk of their stopped VMs, verify and
 * delete. The backup node is the disks' own node, so backups and restores use local pipes; the
 * SSH transport between nodes is not in the run. The checker adds: no backup row other than ok
 * (no pending, restore, lost or damaged); every ok row known to the model with the checksum of
 * the content its disk held when it was taken; every ok row's restic snapshot in the repository,
 * tagged with its id, and no restic snapshot without an ok row; at the end, the bytes restic holds
 * for each (`restic dump`) hash to the row's checksum; no backup snapshot `is-…` left on a disk.
 *
 * Used by bench/chaos.ts (`npm run chaos`) and test/chaos/chaos.test.ts (the short run).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { createDriver } from '../../src/storage/drivers.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { StorageDriver } from '../../src/storage/driver.js';
import { sleep } from '../helpers/esnap-process.js';
import { FakeGuestAgent } from '../helpers/fake-guest-agent.js';
import { BACKUP_NODE, BACKUP_STORAGE, CHAOS_KEY, ChaosCluster, LIBVIRT_NODE, NODES, STORAGE_KINDS, zfsRun, type StorageKind } from './cluster.js';
import { cleanupDomains, defineDomain, domainXml } from '../platform/libvirt.js';

export interface ChaosOptions {
  readonly ops: number;
  readonly seed: number;
  /** Faults to inject (default 2 % of ops); 0 runs the same workload without faults. */
  readonly faults?: number;
  readonly clients?: number;
  /** Quiet-point checks during the run (besides the final one). */
  readonly checks?: number;
  readonly log?: (line: string) => void;
  /**
   * After the final check, plant three faults behind esnap's back (an orphan zfs snapshot, a disk
   * overwritten, a row deleted) and check again: `planted` counts what that check found (the
   * checker's own test; those findings are not counted as violations).
   */
  readonly plant?: boolean;
  /**
   * Backup operations (default on): type 2 (restic) backups of node1's disks to node1's backup
   * storage, restored, verified and deleted; the checker compares rows, the model and the restic
   * repository. Off: the snapshot-only workload of the first runs.
   */
  readonly backups?: boolean;
  /**
   * libvirt domains (default off): on node2 the second VM of each client is a stopped libvirt
   * domain (type qemu) with one disk on each storage, found by node2's agent (ESNAP_HYPERVISOR=
   * libvirt) instead of registered through the API; the same operations run on it.
   */
  readonly libvirt?: boolean;
}

export interface Violation {
  readonly what: string;
  /** Index of the operation the violation is about (or the last one started), for the history. */
  readonly op: number;
}

export interface ChaosReport {
  readonly seed: number;
  readonly ops: number;
  readonly faults: Record<string, number>;
  readonly violations: Violation[];
  readonly seconds: number;
  readonly opsPerS: number;
  readonly outcomes: Record<string, number>;
  /** Operations by kind (`create`, `backup restore`, …; a kind with nothing to act on falls back to a create or a backup). */
  readonly kinds: Record<string, number>;
  readonly history: string[];
  /** With `plant`: the violations the check after the planted faults reported. */
  readonly planted: string[];
  summary(): string;
}

const MiB = 1024 * 1024;
const DISK_MB = 1;
const RETENTION = 2;
const runner = new NodeCommandRunner();

// ---------------------------------------------------------------------------------------------
// Seeded PRNG (mulberry32) and helpers

export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const between = (r: () => number, lo: number, hi: number) => Math.round(lo + r() * (hi - lo));

// ---------------------------------------------------------------------------------------------
// Contents: a token names a 1 MiB pattern; '' is the zeros a new disk holds.

const hashCache = new Map<string, string>();

function patternOf(token: string): Buffer {
  const buf = Buffer.alloc(DISK_MB * MiB);
  if (token === '') return buf;
  const block = createHash('sha256').update(token).digest();
  for (let at = 0; at < buf.length; at += block.length) block.copy(buf, at);
  for (let at = 0; at < buf.length; at += 64 * 1024) buf.write(token.padEnd(64, ' '), at, 'latin1');
  return buf;
}

function hashOfToken(token: string): string {
  let h = hashCache.get(token);
  if (!h) {
    h = sha(patternOf(token));
    hashCache.set(token, h);
  }
  return h;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------
// The model

type SnapState = 'present' | 'maybe';

interface SnapM {
  readonly name: string;
  id: number | null;
  readonly token: string;
  readonly define: string | null;
  pinned: boolean | null;
  note: string | null;
  state: SnapState;
}

interface DiskM {
  readonly arrayId: number;
  /** vm_disk.real_id (a discovered domain's disks need not be numbered in their order). */
  realId: number;
  readonly kind: StorageKind;
  path: string;
  image: string;
  format: 'raw' | 'qcow2';
  /** Contents the disk may hold (more than one after an operation whose answer was lost). */
  content: string[];
  readonly snaps: Map<string, SnapM>;
}

interface VmM {
  readonly name: string;
  readonly node: string;
  uuid: string;
  readonly disks: DiskM[];
  readonly define: { name: string; disk: number };
  /** Retention is checked only after a run that completed with no fault around it. */
  retentionClean: boolean;
}

/** A backup in the model: its row, and the contents it may hold (one once its checksum was seen). */
interface BkpM {
  readonly id: number;
  readonly name: string;
  tokens: string[];
  state: SnapState;
}

/** A backup definition (one disk of a node1 VM) and its backups by row id. */
interface BkpDefM {
  readonly vm: VmM;
  readonly disk: DiskM;
  readonly name: string;
  readonly defId: number;
  readonly backups: Map<number, BkpM>;
}

/** Drivers a type 2 backup reads (zfs cannot stream yet), and those a restore writes into. */
const BACKUP_KINDS: ReadonlySet<StorageKind> = new Set(['file', 'qcow2', 'btrfs']);
const RESTORE_KINDS: ReadonlySet<StorageKind> = new Set(['file', 'btrfs']);
const BKP_RETENTION = 3;

// ---------------------------------------------------------------------------------------------
// The run

type Api = { status: number; body: any } | null; // eslint-disable-line @typescript-eslint/no-explicit-any

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? ((l: string) => console.log(l));
  const faultsWanted = o.faults ?? Math.round(o.ops * 0.02);
  const nClients = o.clients ?? 4;
  const rngFault = prng(o.seed * 7919 + 1);
  const history: string[] = [];
  const violations: Violation[] = [];
  const faultCounts: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  let opsStarted = 0;
  let opsDone = 0;
  const violate = (what: string, op = opsStarted) => {
    violations.push({ what, op });
    history.push(`!! violation: ${what}`);
    log(`chaos: VIOLATION (seed ${o.seed}, op ${op}): ${what}`);
  };

  const withLibvirt = o.libvirt ?? false;
  const cluster = await ChaosCluster.start(log, { libvirt: withLibvirt });
  /** The run's libvirt domains (uuids), undefined again at the end. */
  const domains = new Set<string>();
  const runTag = randomBytes(2).toString('hex');
  const db = new pg.Pool({ connectionString: cluster.pg.url(), max: 4 });
  db.on('error', () => undefined);
  const drivers = new Map<string, StorageDriver>();
  for (const node of NODES) {
    for (const cfg of cluster.storagesOf(node)) {
      const driver = createDriver(cfg, runner);
      await driver.init();
      drivers.set(`${node}/${cfg.name}`, driver);
    }
  }
  const guestSock = join(cluster.dir, 'qga-guest.sock');
  const guest = await FakeGuestAgent.start(guestSock);
  const t0 = Date.now();
  try {
    // ---- HTTP with bookkeeping of errors -------------------------------------------------
    const pickServer = (r: () => number): number => {
      const up = cluster.servers.map((s, i) => (s.downSince === null ? i : -1)).filter((i) => i >= 0);
      return up.length ? pick(r, up) : 0;
    };
    const overlaps = (kind: string, target: string | null, a: number, b: number, graceMs = 2000) =>
      cluster.windows.some((w) => w.kind === kind && (target === null || w.target === target) && w.start <= b && (w.end === null || w.end + graceMs >= a));
    const api = async (r: () => number, method: string, path: string, body?: unknown, timeoutMs = 60_000): Promise<Api> => {
      const i = pickServer(r);
      const server = cluster.servers[i]!;
      const a = Date.now();
      try {
        const res = await fetch(`${cluster.url(i)}/api${path}`, {
          method,
          headers: { 'ES-API-KEY': CHAOS_KEY, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await res.text();
        const b = Date.now();
        if (res.status >= 500) {
          const excused = res.status === 503 && overlaps('pg', null, a, b, 5000);
          if (!excused) violate(`${method} ${path} on ${server.name} answered ${res.status}: ${text.slice(0, 300)}`);
          return null;
        }
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        return { status: res.status, body: parsed };
      } catch (err) {
        const b = Date.now();
        if (!overlaps('kill', server.name, a, b, 1000)) violate(`${method} ${path} on ${server.name} failed outside its kill: ${(err as Error).message}`);
        return null;
      }
    };
    /** A GET that must get through: retried on other servers until it answers. */
    const read = async (r: () => number, path: string): Promise<{ status: number; body: any }> => { // eslint-disable-line @typescript-eslint/no-explicit-any
      for (let i = 0; ; i++) {
        const res = await api(r, 'GET', path);
        if (res) return res;
        if (i > 600) throw new Error(`GET ${path}: no answer for minutes`);
        await sleep(200);
      }
    };
    const q = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => {
      for (let i = 0; ; i++) {
        try {
          return (await db.query<R>(text, values)).rows;
        } catch (err) {
          if (i > 300) throw err;
          await sleep(200);
        }
      }
    };
    /** Final status of a task: SUCCESS, FAILURE, REVOKED, or null when it did not end in time. */
    const waitTask = async (r: () => number, id: string, ms = 240_000): Promise<{ state: string; result: any } | null> => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const res = await api(r, 'GET', `/task/${id}/status/`);
        if (res && res.status !== 201) {
          if (res.status === 404) return { state: 'MISSING', result: res.body };
          return { state: String(res.body?.status), result: res.body?.result };
        }
        await sleep(res ? 100 : 300);
      }
      return null;
    };
    /** Waits until no task of these VMs waits or runs. */
    const quietVms = async (uuids: string[], ms = 240_000): Promise<boolean> => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const rows = await q(`SELECT id FROM task WHERE vm_uuid = ANY($1) AND state IN ('PENDING','STARTED')`, [uuids]);
        if (rows.length === 0) return true;
        await sleep(150);
      }
      return false;
    };

    // The lock log (see checkLocks): a copy of every task_lock row, made by a trigger in esnap's own
    // transaction; the harness's only addition to the database.
    await q(`CREATE TABLE chaos_lock_log (key text NOT NULL, task_id text NOT NULL)`);
    await q(`CREATE FUNCTION chaos_lock_log_f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO chaos_lock_log VALUES (NEW.key, NEW.task_id); RETURN NEW; END $$`);
    await q(`CREATE TRIGGER chaos_lock_log_t AFTER INSERT ON task_lock FOR EACH ROW EXECUTE FUNCTION chaos_lock_log_f()`);

    // ---- set-up: VMs, disks, definitions ----------------------------------------------------
    const setupRng = prng(o.seed);
    const must = async (method: string, path: string, body: unknown, want: number[]): Promise<any> => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const res = await api(setupRng, method, path, body, 120_000);
      if (!res || !want.includes(res.status)) throw new Error(`set-up ${method} ${path}: ${res?.status} ${JSON.stringify(res?.body)}`);
      return res.body;
    };
    /** A discovered domain's disks once node2's agent has mapped them all (discovery is asynchronous). */
    const waitDiscovered = async (name: string, n: number): Promise<Array<{ disk_id: number; zpool: string | null; path: string }>> => {
      const end = Date.now() + 120_000;
      for (;;) {
        const res = await api(setupRng, 'GET', `/vm/${name}/define/disk`);
        const list = res?.status === 200 ? (res.body.result as Array<{ disk_id: number; zpool: string | null; path: string }>) : [];
        if (list.length === n && list.every((d) => d.zpool !== null)) return list;
        if (Date.now() > end) throw new Error(`set-up: libvirt domain ${name} not discovered with ${n} mapped disks in 120 s: ${JSON.stringify(res?.body)}`);
        await sleep(500);
      }
    };
    const vms: VmM[] = [];
    for (let c = 0; c < nClients; c++) {
      const node = NODES[c % NODES.length]!;
      for (const k of [0, 1]) {
        const domain = withLibvirt && node === LIBVIRT_NODE && k === 1;
        const name = domain ? `c${c}lv${runTag}` : `c${c}vm${k}`;
        const disks: DiskM[] = [];
        // The order of storages turns with the client, so that definitions (disk 1 or 2 on kvm) cover all four.
        const kinds = [...STORAGE_KINDS.slice(c % STORAGE_KINDS.length), ...STORAGE_KINDS.slice(0, c % STORAGE_KINDS.length)];
        if (domain) {
          // A stopped domain with one disk on each storage in the driver's own layout, made by the
          // driver as esnap would make it; node2's agent discovers it (no API call registers it).
          const xmlDisks: Array<{ target: string; source: string; format: 'raw' | 'qcow2' }> = [];
          for (const [i, kind] of kinds.entries()) {
            const path = `${name}-${i + 1}`;
            const driver = drivers.get(`${node}/${kind}`)!;
            await driver.createDisk({ path, sizeBytes: DISK_MB * 1024 * 1024 });
            const img = await driver.imageOf({ path });
            xmlDisks.push({ target: `vd${String.fromCharCode(97 + i)}`, source: img.path, format: img.format });
          }
          domains.add(await defineDomain(domainXml(name, { disks: xmlDisks })));
          const found = await waitDiscovered(name, kinds.length);
          for (const [i, kind] of kinds.entries()) {
            const got = found.find((d) => d.disk_id === i + 1);
            if (!got || got.zpool !== kind) throw new Error(`set-up: domain ${name} disk ${i + 1} was discovered as ${JSON.stringify(got)}, expected on ${kind}`);
            const img = await drivers.get(`${node}/${kind}`)!.imageOf({ path: got.path });
            disks.push({ arrayId: i + 1, realId: -1, kind, path: got.path, image: img.path, format: img.format, content: [''], snaps: new Map() });
          }
        } else {
          await must('POST', `/vm/${name}/define/`, { node }, [201]);
          for (const [i, kind] of kinds.entries()) {
            const d = await must('POST', `/vm/${name}/define/disk/${i + 1}/`, { size: DISK_MB, zpool: kind }, [201]);
            const path = String(d.result.path);
            const img = await drivers.get(`${node}/${kind}`)!.imageOf({ path });
            disks.push({ arrayId: i + 1, realId: -1, kind, path, image: img.path, format: img.format, content: [''], snaps: new Map() });
          }
        }
        const defDisk = between(setupRng, 1, 2); // Danube: a kvm definition names disk 1 or 2
        const define = { name: `d${c}${k}`, disk: defDisk };
        await must('POST', `/vm/${name}/define/snapshot/${define.name}/`, { disk_id: defDisk, schedule: '0 0 1 1 *', retention: RETENTION, active: true }, [201]);
        const [row] = await q<{ uuid: string }>('SELECT uuid FROM vm WHERE hostname = $1', [name]);
        for (const d of disks) {
          const [dr] = await q<{ real_id: number }>('SELECT real_id FROM vm_disk WHERE vm_uuid = $1 AND path = $2', [row!.uuid, d.path]);
          d.realId = dr!.real_id;
        }
        vms.push({ name, node, uuid: row!.uuid, disks, define, retentionClean: true });
      }
    }
    // The guest VM: running, with a scripted guest agent; only the fault injector uses it.
    await must('POST', '/vm/guestvm/define/', { node: 'node1', status: 'running', qga_socket: guestSock }, [201]);
    await must('POST', '/vm/guestvm/define/disk/1/', { size: DISK_MB, zpool: 'file' }, [201]);
    // Backup definitions: disks 1 and 2 (the kvm limit) of node1's VMs, where type 2 can read them.
    const withBackups = o.backups ?? true;
    const bkpDefs: BkpDefM[] = [];
    if (withBackups) {
      for (const vm of vms) {
        if (vm.node !== BACKUP_NODE) continue;
        for (const d of vm.disks.slice(0, 2)) {
          if (!BACKUP_KINDS.has(d.kind)) continue;
          const name = `b${vm.name.replace(/\D/g, '')}${d.arrayId}`;
          await must('POST', `/vm/${vm.name}/define/backup/${name}`, { disk_id: d.arrayId, type: 2, node: BACKUP_NODE, zpool: BACKUP_STORAGE, schedule: '0 0 1 1 *', retention: BKP_RETENTION, active: true }, [201]);
          const [row] = await q<{ id: number }>('SELECT id FROM backup_define WHERE vm_uuid = $1 AND name = $2', [vm.uuid, name]);
          bkpDefs.push({ vm, disk: d, name, defId: row!.id, backups: new Map() });
        }
      }
      log(`chaos: ${bkpDefs.length} backup definitions (type 2, restic) to ${BACKUP_NODE}/${BACKUP_STORAGE}: ${bkpDefs.map((b) => `${b.vm.name}/${b.disk.arrayId} ${b.disk.kind}`).join(', ')}`);
    }
    log(`chaos: ${vms.length} VMs × ${STORAGE_KINDS.length} disks (${STORAGE_KINDS.join(', ')}) on ${NODES.length} nodes${domains.size ? ` (${domains.size} of them libvirt domains on ${LIBVIRT_NODE})` : ''}, ${nClients} clients, set up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // ---- writing and reading contents -----------------------------------------------------
    const writeToken = async (d: DiskM, token: string): Promise<void> => {
      hashOfToken(token); // known by its hash, to name what a disk holds instead
      const buf = patternOf(token);
      if (d.format === 'raw') {
        const fh = await open(d.image, 'r+');
        try {
          await fh.write(buf, 0, buf.length, 0);
          await fh.sync();
        } finally {
          await fh.close();
        }
      } else {
        const tmp = join(cluster.dir, `w-${token.replace(/[^a-z0-9]/gi, '_')}.raw`);
        await writeFile(tmp, buf);
        const r = await runner.run(['qemu-img', 'convert', '-n', '-f', 'raw', '-O', 'qcow2', tmp, d.image], { timeoutMs: 120_000 });
        await rm(tmp, { force: true });
        if (r.code !== 0) throw new Error(`writing ${d.image}: ${r.stderr}`);
      }
      d.content = [token];
    };
    const readRawOf = async (format: 'raw' | 'qcow2', image: string, snapshot?: string): Promise<string> => {
      if (format === 'raw' && !snapshot) return sha(await readFile(image));
      const tmp = join(cluster.dir, `r-${Date.now()}-${Math.random().toString(16).slice(2)}.raw`);
      const argv = ['qemu-img', 'convert', '-U', '-f', 'qcow2', ...(snapshot ? ['-l', `snapshot.name=${snapshot}`] : []), '-O', 'raw', image, tmp];
      const r = await runner.run(argv, { timeoutMs: 120_000 });
      try {
        if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
        return sha(await readFile(tmp));
      } finally {
        await rm(tmp, { force: true });
      }
    };
    let cloneN = 0;
    const snapshotHash = async (vm: VmM, d: DiskM, id: string): Promise<string> => {
      const cfg = cluster.storagesOf(vm.node).find((s) => s.name === d.kind)!;
      switch (d.kind) {
        case 'file':
          return sha(await readFile(join(cfg.root!, '.snapshots', d.path, id)));
        case 'btrfs':
          return sha(await readFile(join(cfg.root!, '.snapshots', d.path, id, 'disk.img')));
        case 'qcow2':
          return readRawOf('qcow2', d.image, id);
        case 'zfs': {
          const clone = `${cluster.zfs.name}/chk${cloneN++}`;
          await zfsRun(['clone', `${cfg.dataset}/${d.path}@${id}`, clone]);
          try {
            // zfs-fuse mounts a new clone a moment after `zfs clone` returns.
            const file = join(cluster.zfs.mountpoint, clone.slice(cluster.zfs.name.length + 1), 'disk.img');
            for (let i = 0; ; i++) {
              try {
                return sha(await readFile(file));
              } catch (err) {
                if (i >= 20) throw err;
                if (i === 5) await zfsRun(['mount', clone]).catch(() => undefined);
                await sleep(200);
              }
            }
          } finally {
            await zfsRun(['destroy', clone]);
          }
        }
      }
    };

    // ---- operations ------------------------------------------------------------------------
    type Outcome = 'ok' | 'refused' | 'failed' | 'revoked' | 'unknown';
    const count = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1);
    let tokenN = 0;

    /** A task's end, classified; FAILURE must lie inside a fault window that could explain it. */
    const settle = async (r: () => number, opIndex: number, started: number, taskId: string, node: string, kind: StorageKind | null): Promise<{ outcome: Outcome; result: any }> => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const end = await waitTask(r, taskId);
      if (!end) return { outcome: 'unknown', result: null };
      if (end.state === 'SUCCESS') return { outcome: 'ok', result: end.result };
      if (end.state === 'REVOKED') return { outcome: 'revoked', result: end.result };
      if (end.state === 'FAILURE') {
        const now = Date.now();
        history.push(`   task ${taskId} FAILURE after ${now - started} ms: ${JSON.stringify(end.result).slice(0, 300)}`);
        const excused =
          overlaps('kill', node, started, now) ||
          overlaps('slow', node, started, now) ||
          overlaps('kill', 'server1', started, now) ||
          overlaps('kill', 'server2', started, now) ||
          overlaps('pg', null, started, now, 5000) ||
          (kind !== null && overlaps('full', kind, started, now, 3000));
        if (!excused) violate(`task ${taskId} failed outside any fault: ${JSON.stringify(end.result)}`, opIndex);
        return { outcome: 'failed', result: end.result };
      }
      violate(`task ${taskId} ended ${end.state}: ${JSON.stringify(end.result)}`, opIndex);
      return { outcome: 'unknown', result: end.result };
    };

    const presentSnaps = (d: DiskM) => [...d.snaps.values()].filter((s) => s.state === 'present' && s.id !== null);
    const learnId = async (r: () => number, vm: VmM, d: DiskM, s: SnapM): Promise<void> => {
      const res = await read(r, `/vm/${vm.name}/snapshot/${s.name}/?disk_id=${d.arrayId}`);
      if (res.status === 200) s.id = Number(res.body.result.id);
      else violate(`snapshot ${vm.name}/${d.arrayId}/${s.name} reported created but GET answers ${res.status}`);
    };

    interface ClientCtx {
      readonly c: number;
      readonly r: () => number;
      readonly vms: [VmM, VmM];
      readonly bkpDefs: BkpDefM[];
    }

    const doCreate = async (cx: ClientCtx, i: number, all: boolean, cancel = false): Promise<string> => {
      const vm = pick(cx.r, cx.vms);
      const targets = all ? vm.disks : [pick(cx.r, vm.disks)];
      const name = `c${cx.c}s${tokenN++}`;
      const snaps = new Map<DiskM, SnapM>();
      for (const d of targets) {
        const token = `${o.seed}:${name}:${d.arrayId}`;
        await writeToken(d, token);
        snaps.set(d, { name, id: null, token, define: null, pinned: false, note: '', state: 'maybe' });
      }
      const started = Date.now();
      const res = await api(cx.r, 'POST', `/vm/${vm.name}/snapshot/${name}/`, { disk_id: all ? 'all' : targets[0]!.arrayId });
      let outcome: Outcome;
      if (!res) outcome = 'unknown';
      else if (res.status !== 201) {
        outcome = 'refused';
        if (res.status === 406) violate(`create of a new name ${vm.name}/${name} refused as existing: ${JSON.stringify(res.body)}`, i);
      } else {
        const id = String(res.body.task_id);
        if (cancel) await api(cx.r, 'PUT', `/task/${id}/cancel/`, {});
        outcome = (await settle(cx.r, i, started, id, vm.node, all ? null : targets[0]!.kind)).outcome;
      }
      if (outcome === 'ok') {
        for (const [d, s] of snaps) {
          s.state = 'present';
          d.snaps.set(name, s);
          await learnId(cx.r, vm, d, s);
        }
      } else if (outcome === 'unknown') {
        for (const [d, s] of snaps) d.snaps.set(name, s);
        await quietVms([vm.uuid]);
      }
      return `${cancel ? 'create+cancel' : all ? 'create all' : 'create'} ${vm.name}/${all ? 'all' : targets[0]!.arrayId} ${name} → ${res?.status ?? 'lost'} ${outcome}`;
    };

    const doDelete = async (cx: ClientCtx, i: number, bulk: boolean): Promise<string> => {
      const vm = pick(cx.r, cx.vms);
      const d = pick(cx.r, vm.disks);
      const cands = presentSnaps(d).filter((s) => s.define === null);
      if (cands.length === 0) return doCreate(cx, i, false);
      const chosen = bulk ? cands.filter(() => cx.r() < 0.5).slice(0, 3) : [pick(cx.r, cands)];
      if (chosen.length === 0) chosen.push(cands[0]!);
      const started = Date.now();
      const res = bulk
        ? await api(cx.r, 'DELETE', `/vm/${vm.name}/snapshot/`, { disk_id: d.arrayId, snapnames: chosen.map((s) => s.name) })
        : await api(cx.r, 'DELETE', `/vm/${vm.name}/snapshot/${chosen[0]!.name}/`, { disk_id: d.arrayId });
      const anyPinned = chosen.some((s) => s.pinned !== false);
      let outcome: Outcome;
      if (!res) outcome = 'unknown';
      else if (res.status !== 201) {
        outcome = 'refused';
        if (!anyPinned && res.status === 417) violate(`delete of ok unpinned ${vm.name}/${d.arrayId} ${chosen.map((s) => s.name)} refused: ${JSON.stringify(res.body)}`, i);
      } else outcome = (await settle(cx.r, i, started, String(res.body.task_id), vm.node, d.kind)).outcome;
      if (outcome === 'ok') {
        if (chosen.some((s) => s.pinned === true)) violate(`a pinned snapshot of ${vm.name}/${d.arrayId} was deleted`, i);
        for (const s of chosen) d.snaps.delete(s.name);
      } else if (outcome === 'unknown' || outcome === 'failed') {
        // A delete that failed (only inside a fault window, or settle reports it) may have destroyed
        // some of its snapshots before it was cut off: the repair sync then deletes their rows (seed 1,
        // 1,000 operations, op 168). Either state is right; the rows tell which.
        for (const s of chosen) s.state = 'maybe';
        await quietVms([vm.uuid]);
      }
      return `${bulk ? 'bulk delete' : 'delete'} ${vm.name}/${d.arrayId} ${chosen.map((s) => s.name).join(',')} → ${res?.status ?? 'lost'} ${outcome}`;
    };

    const doRollback = async (cx: ClientCtx, i: number, restore: boolean): Promise<string> => {
      const vm = pick(cx.r, cx.vms);
      const d = pick(cx.r, vm.disks);
      const cands = presentSnaps(d);
      if (cands.length === 0) return doCreate(cx, i, false);
      const s = pick(cx.r, cands);
      const target = restore ? cx.vms.find((v) => v !== vm)! : vm;
      const td = target.disks[d.arrayId - 1]!;
      const body = restore ? { disk_id: d.arrayId, force: true, target_hostname_or_uuid: target.name, target_disk_id: d.arrayId } : { disk_id: d.arrayId, force: true };
      const started = Date.now();
      const res = await api(cx.r, 'PUT', `/vm/${vm.name}/snapshot/${s.name}/`, body);
      let outcome: Outcome;
      if (!res) outcome = 'unknown';
      else if (res.status !== 201) outcome = 'refused';
      else outcome = (await settle(cx.r, i, started, String(res.body.task_id), vm.node, d.kind)).outcome;
      // zfs destroys the newer snapshots of a rollback's disk, and every snapshot of a restore's target.
      const destroyed = d.kind !== 'zfs' ? [] : restore ? [...td.snaps.values()] : [...d.snaps.values()].filter((x) => x.id === null || x.id > s.id!);
      if (outcome === 'ok') {
        td.content = [s.token];
        // A snapshot whose create answer was lost has no id in the model: a rollback destroys it only
        // if it is newer than `s`, which the model cannot tell, so it stays "maybe" (seed 1, 1,000
        // operations: op 846's lost `disk_id: "all"` create left c2s492 (row 665) on a zfs disk, older
        // than the snapshot op 880 rolled back to; the model had dropped it).
        for (const x of destroyed) {
          if (!restore && x.id === null) x.state = 'maybe';
          else td.snaps.delete(x.name);
        }
      } else if (outcome === 'unknown' || outcome === 'failed') {
        // A rollback or restore that failed inside a fault window (settle excuses only those) may
        // have switched the disk before its agent or server died: old bytes or new bytes, never a
        // mix, is what esnap promises (CI run, seed 3, op 200: a qcow2 disk held the rolled-back
        // snapshot's pattern after a FAILURE). Either content is right.
        td.content = [...new Set([...td.content, s.token])];
        for (const x of destroyed) x.state = 'maybe';
        await quietVms([vm.uuid, target.uuid]);
      }
      return `${restore ? `restore into ${target.name}` : 'rollback'} ${vm.name}/${d.arrayId} ${s.name} → ${res?.status ?? 'lost'} ${outcome}`;
    };

    const doNotePin = async (cx: ClientCtx, i: number): Promise<string> => {
      const vm = pick(cx.r, cx.vms);
      const d = pick(cx.r, vm.disks);
      const cands = presentSnaps(d).filter((s) => s.define === null);
      if (cands.length === 0) return doCreate(cx, i, false);
      const s = pick(cx.r, cands);
      const pin = cx.r() < 0.4;
      const body = pin ? { disk_id: d.arrayId, pinned: !s.pinned } : { disk_id: d.arrayId, note: `note${tokenN++}` };
      const res = await api(cx.r, 'PUT', `/vm/${vm.name}/snapshot/${s.name}/`, body);
      if (res?.status === 200) {
        if (pin) s.pinned = !s.pinned;
        else s.note = (body as { note: string }).note;
      } else if (!res) {
        if (pin) s.pinned = null;
        else s.note = null;
      } else violate(`${pin ? 'pin' : 'note'} of ${vm.name}/${d.arrayId} ${s.name} answered ${res.status}: ${JSON.stringify(res.body)}`, i);
      return `${pin ? 'pin' : 'note'} ${vm.name}/${d.arrayId} ${s.name} → ${res?.status ?? 'lost'}`;
    };

    const doSync = async (cx: ClientCtx, i: number): Promise<string> => {
      const vm = pick(cx.r, cx.vms);
      const d = pick(cx.r, vm.disks);
      const started = Date.now();
      const res = await api(cx.r, 'PUT', `/vm/${vm.name}/snapshot/`, { disk_id: d.arrayId });
      let outcome: Outcome = 'unknown';
      if (res?.status === 201) {
        const end = await settle(cx.r, i, started, String(res.body.task_id), vm.node, d.kind);
        outcome = end.outcome;
        const message = String(end.result?.message ?? '');
        if (end.outcome === 'ok' && /lost|found/.test(message)) violate(`sync of ${vm.name}/${d.arrayId} found storage and database apart: ${message}`, i);
      } else if (res) outcome = 'refused';
      if (outcome === 'unknown') await quietVms([vm.uuid]);
      return `sync ${vm.name}/${d.arrayId} → ${res?.status ?? 'lost'} ${outcome}`;
    };

    const doRunNow = async (cx: ClientCtx, i: number): Promise<string> => {
      const vm = pick(cx.r, cx.vms);
      const d = vm.disks[vm.define.disk - 1]!;
      const token = `${o.seed}:run${tokenN++}:${vm.name}`;
      await writeToken(d, token);
      const started = Date.now();
      const res = await api(cx.r, 'POST', `/vm/${vm.name}/define/snapshot/${vm.define.name}/run/`, { disk_id: d.arrayId });
      let outcome: Outcome;
      if (!res) outcome = 'unknown';
      else if (res.status !== 201) outcome = 'refused';
      else outcome = (await settle(cx.r, i, started, String(res.body.task_id), vm.node, d.kind)).outcome;
      // Retention deletes as a task of its own, submitted by a hook of the server that recorded the
      // create's end, after its commit (and it waits while the disk is locked): the create can be
      // SUCCESS with no retention task yet (seed 1, 2,000 operations without faults: the next
      // write to the qcow2 disk found it locked by retention's delete). Wait until the definition
      // keeps at most RETENTION unpinned ok snapshots on the disk, within a bound (a server killed
      // before its hook leaves retention to the next run).
      const bound = Date.now() + 60_000;
      let retained = false;
      for (;;) {
        await quietVms([vm.uuid]);
        if (outcome === 'refused' || outcome === 'revoked' || Date.now() > bound) break;
        const kept = await q<{ n: string }>(
          `SELECT count(*) AS n FROM snapshot s JOIN snapshot_define sd ON sd.id = s.define_id JOIN vm_disk vd ON vd.vm_uuid = s.vm_uuid AND vd.real_id = s.disk_real_id
            WHERE s.vm_uuid = $1 AND sd.name = $2 AND vd.path = $3 AND s.status = 1 AND s.pinned = 0`,
          [vm.uuid, vm.define.name, d.path],
        );
        if (Number(kept[0]?.n ?? 0) <= RETENTION) {
          // The count drops as the retention delete is submitted (its rows leave status ok in the
          // transaction that makes the task and takes the disk's lock): wait for that task too (the
          // 10,000-op baseline of seed 1, no faults, op 7708: a restore into the disk found it locked).
          await quietVms([vm.uuid]);
          retained = true;
          break;
        }
        await sleep(250);
      }
      if (outcome === 'ok' || outcome === 'unknown') {
        const list = await read(cx.r, `/vm/${vm.name}/snapshot/?full=true&define=${vm.define.name}&disk_id=${d.arrayId}`);
        const fresh = (list.body.result as Array<{ name: string; id: number }>).filter((x) => !d.snaps.has(x.name));
        if (outcome === 'ok' && fresh.length !== 1) violate(`run of ${vm.name}/${vm.define.name} succeeded with ${fresh.length} new snapshots`, i);
        for (const x of fresh) d.snaps.set(x.name, { name: x.name, id: x.id, token, define: vm.define.name, pinned: false, note: '', state: outcome === 'ok' ? 'present' : 'maybe' });
        // Retention not seen within the bound (a loaded machine): the older ones may still go later.
        const clean = outcome === 'ok' && retained && !cluster.windows.some((w) => w.start <= Date.now() && (w.end === null || w.end + 3000 >= started));
        // The newest RETENTION ok snapshots of the definition stay; older ones are due.
        const ofDef = [...d.snaps.values()].filter((x) => x.define === vm.define.name && x.id !== null).sort((a, b) => b.id! - a.id!);
        for (const x of ofDef.slice(RETENTION)) {
          if (clean) d.snaps.delete(x.name);
          else x.state = 'maybe';
        }
        vm.retentionClean = clean;
      }
      return `run ${vm.name}/${vm.define.name} (disk ${d.arrayId}) → ${res?.status ?? 'lost'} ${outcome}`;
    };

    // ---- backups ---------------------------------------------------------------------------------
    type BkpRow = { id: number; name: string; status: number; checksum: string; restic_id: string | null };
    const bkpRows = (defId: number) => q<BkpRow>(`SELECT id, name, status, checksum, restic_id FROM backup WHERE define_id = $1 ORDER BY id`, [defId]);
    /** A fault in the last minute: its repair or cleanup tasks may hold a disk's locks for a while. */
    const nearFault = (at: number) => cluster.windows.some((w) => w.end === null || w.end + 60_000 >= at);
    const presentBackups = (cx: ClientCtx) => cx.bkpDefs.flatMap((b) => [...b.backups.values()].filter((x) => x.state === 'present').map((x) => ({ b, x })));

    const doBackup = async (cx: ClientCtx, i: number): Promise<string> => {
      if (cx.bkpDefs.length === 0) return doCreate(cx, i, false);
      const b = pick(cx.r, cx.bkpDefs);
      const { vm, disk: d } = b;
      const token = `${o.seed}:bk${tokenN++}:${vm.name}:${d.arrayId}`;
      await writeToken(d, token);
      const before = new Set((await bkpRows(b.defId)).map((r) => r.id));
      const started = Date.now();
      const res = await api(cx.r, 'POST', `/vm/${vm.name}/backup/${b.name}`, { disk_id: d.arrayId });
      let outcome: Outcome;
      if (!res) outcome = 'unknown';
      else if (res.status !== 201) outcome = 'refused';
      else outcome = (await settle(cx.r, i, started, String(res.body.task_id), vm.node, d.kind)).outcome;
      // Retention deletes as a task of its own, submitted by a hook of the server that recorded the
      // backup's end, after its commit: the backup can be SUCCESS with no retention task yet (seed
      // 1, 10,000 operations, op 854: 4 backups kept, then a verify refused by the retention's lock
      // and a restore of a backup retention had deleted). Wait until it has run, within a bound (a
      // server killed before its hook leaves retention to the definition's next backup).
      const bound = Date.now() + 60_000;
      for (;;) {
        await quietVms([vm.uuid]);
        if (outcome === 'refused' || outcome === 'revoked' || Date.now() > bound) break;
        // A retention delete under way holds its rows pending (status 2) until it ends: wait for it
        // too (the baseline of seed 1, 3,000 operations without faults, op 1000: a row pending in
        // retention's delete was taken as kept, and was gone at the quiet point).
        const now = await bkpRows(b.defId);
        if (now.every((r) => r.status !== 2) && now.filter((r) => r.status === 1).length <= BKP_RETENTION) break;
        await sleep(250);
      }
      const after = await bkpRows(b.defId);
      const fresh = after.filter((r) => !before.has(r.id));
      if (outcome === 'ok') {
        const ok = fresh.filter((r) => r.status === 1);
        if (ok.length !== 1) violate(`backup of ${vm.name}/${d.arrayId} (${b.name}) succeeded with ${ok.length} new ok rows: ${JSON.stringify(fresh)}`, i);
        for (const r of ok) if (r.checksum !== hashOfToken(token)) violate(`backup ${r.name} of ${vm.name}/${d.arrayId} (${d.kind}) has checksum ${r.checksum}, the disk held ${token}`, i);
      }
      for (const r of fresh) b.backups.set(r.id, { id: r.id, name: r.name, tokens: [token], state: outcome === 'ok' ? 'present' : 'maybe' });
      // Rows gone since: retention's deletes, which take the oldest.
      const ids = new Set(after.map((r) => r.id));
      const kept = [...b.backups.values()].filter((x) => ids.has(x.id));
      for (const x of [...b.backups.values()]) {
        if (ids.has(x.id)) continue;
        if (x.state === 'present' && kept.some((k) => k.id < x.id)) violate(`backup ${x.name} (row ${x.id}) of ${vm.name}/${d.arrayId} vanished while older ones were kept`, i);
        b.backups.delete(x.id);
      }
      const clean = outcome === 'ok' && !cluster.windows.some((w) => w.start <= Date.now() && (w.end === null || w.end + 3000 >= started));
      const okAfter = after.filter((r) => r.status === 1).sort((a, b) => a.id - b.id);
      const okNow = okAfter.length;
      // Retention not seen within the bound: the oldest beyond it may still go, later, and rows a
      // delete still holds pending may go too.
      for (const r of [...okAfter.slice(0, Math.max(0, okNow - BKP_RETENTION)), ...after.filter((r) => r.status === 2)]) {
        const x = b.backups.get(r.id);
        if (x) x.state = 'maybe';
      }
      if (clean && okNow > BKP_RETENTION) violate(`${vm.name}/${b.name} keeps ${okNow} backups, retention ${BKP_RETENTION}`, i);
      return `backup ${vm.name}/${d.arrayId} ${b.name}${fresh.length ? ` (${fresh.map((r) => r.name).join(',')})` : ''} → ${res?.status ?? 'lost'} ${outcome}`;
    };

    const doBackupDelete = async (cx: ClientCtx, i: number): Promise<string> => {
      const cands = presentBackups(cx);
      if (cands.length === 0) return doBackup(cx, i);
      const { b, x } = pick(cx.r, cands);
      const started = Date.now();
      const res = await api(cx.r, 'DELETE', `/vm/${b.vm.name}/backup/${x.name}`, { disk_id: b.disk.arrayId });
      let outcome: Outcome;
      if (!res) outcome = 'unknown';
      else if (res.status === 200) outcome = 'ok';
      else if (res.status !== 201) {
        outcome = 'refused';
        if (!nearFault(started)) violate(`delete of ok backup ${b.vm.name}/${x.name} answered ${res.status}: ${JSON.stringify(res.body)}`, i);
      } else outcome = (await settle(cx.r, i, started, String(res.body.task_id), BACKUP_NODE, null)).outcome;
      if (outcome === 'ok') b.backups.delete(x.id);
      else if (outcome === 'unknown' || outcome === 'failed') {
        x.state = 'maybe';
        await quietVms([b.vm.uuid]);
      }
      return `backup delete ${b.vm.name}/${b.disk.arrayId} ${x.name} → ${res?.status ?? 'lost'} ${outcome}`;
    };

    const doBackupRestore = async (cx: ClientCtx, i: number): Promise<string> => {
      const cands = presentBackups(cx);
      if (cands.length === 0) return doBackup(cx, i);
      const { b, x } = pick(cx.r, cands);
      const target = pick(cx.r, cx.vms);
      const td = pick(cx.r, target.disks.filter((d) => RESTORE_KINDS.has(d.kind)));
      const started = Date.now();
      const body = { disk_id: b.disk.arrayId, target_hostname_or_uuid: target.name, target_disk_id: td.arrayId, force: true };
      const res = await api(cx.r, 'PUT', `/vm/${b.vm.name}/backup/${x.name}`, body);
      let outcome: Outcome;
      if (!res) outcome = 'unknown';
      else if (res.status !== 201) {
        outcome = 'refused';
        if (!nearFault(started)) violate(`restore of ok backup ${b.vm.name}/${x.name} into ${target.name}/${td.arrayId} answered ${res.status}: ${JSON.stringify(res.body)}`, i);
      } else outcome = (await settle(cx.r, i, started, String(res.body.task_id), BACKUP_NODE, td.kind)).outcome;
      if (outcome === 'ok') td.content = [...x.tokens];
      else if (outcome === 'unknown' || outcome === 'failed') {
        // Old bytes or all the new ones (the restore switches in only a verified copy).
        td.content = [...new Set([...td.content, ...x.tokens])];
        await quietVms([b.vm.uuid, target.uuid]);
      }
      return `backup restore ${b.vm.name}/${b.disk.arrayId} ${x.name} into ${target.name}/${td.arrayId} (${td.kind}) → ${res?.status ?? 'lost'} ${outcome}`;
    };

    const doBackupVerify = async (cx: ClientCtx, i: number): Promise<string> => {
      const cands = presentBackups(cx);
      if (cands.length === 0) return doBackup(cx, i);
      const { b, x } = pick(cx.r, cands);
      const started = Date.now();
      const res = await api(cx.r, 'PUT', `/vm/${b.vm.name}/backup/${x.name}`, { disk_id: b.disk.arrayId, verify: true });
      let outcome: Outcome;
      if (!res) outcome = 'unknown';
      else if (res.status !== 201) {
        outcome = 'refused';
        if (!nearFault(started)) violate(`verify of ok backup ${b.vm.name}/${x.name} answered ${res.status}: ${JSON.stringify(res.body)}`, i);
      } else outcome = (await settle(cx.r, i, started, String(res.body.task_id), BACKUP_NODE, null)).outcome;
      if (outcome !== 'ok') await quietVms([b.vm.uuid]);
      return `backup verify ${b.vm.name}/${b.disk.arrayId} ${x.name} → ${res?.status ?? 'lost'} ${outcome}`;
    };

    /** restic on the backup storage's repository (read-only, without restic's lock). */
    const restic = (args: string[]): Promise<Buffer> => {
      const { repo, passwordFile } = cluster.resticRepo();
      return new Promise((resolve, reject) => {
        const p = spawn('restic', [...args, '--no-lock'], { env: { ...process.env, RESTIC_REPOSITORY: repo, RESTIC_PASSWORD_FILE: passwordFile } });
        const out: Buffer[] = [];
        let err = '';
        p.stdout.on('data', (b: Buffer) => out.push(b));
        p.stderr.on('data', (b: Buffer) => (err += b.toString()));
        p.on('error', reject);
        p.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`restic ${args.join(' ')}: exit ${code}: ${err.slice(0, 500)}`))));
      });
    };

    const checkBackups = async (label: string, final: boolean): Promise<void> => {
      const odd = await q<{ id: number; name: string; status: number }>(`SELECT id, name, status FROM backup WHERE status <> 1`);
      const statusName: Record<number, string> = { 2: 'pending', 3: 'restore', 4: 'lost', 5: 'damaged' };
      for (const r of odd) violate(`${label}: backup row ${r.id} (${r.name}) has status ${statusName[r.status] ?? r.status}`);
      for (const b of bkpDefs) {
        const rows = await bkpRows(b.defId);
        // The oldest ok rows beyond the retention are due to a retention that has not run yet: they stay "maybe".
        const okRows = rows.filter((r) => r.status === 1).sort((a, z) => a.id - z.id);
        const due = new Set(okRows.slice(0, Math.max(0, okRows.length - BKP_RETENTION)).map((r) => r.id));
        for (const x of [...b.backups.values()]) {
          if (x.state !== 'maybe') continue;
          if (!rows.some((r) => r.id === x.id)) b.backups.delete(x.id);
          else if (!due.has(x.id)) x.state = 'present';
        }
        for (const r of rows) {
          const x = b.backups.get(r.id);
          if (!x) {
            violate(`${label}: ${b.vm.name}/${b.name} has backup row ${r.id} "${r.name}" the model does not know`);
            continue;
          }
          const match = x.tokens.filter((t) => hashOfToken(t) === r.checksum);
          if (match.length === 0) violate(`${label}: backup ${r.name} (row ${r.id}) of ${b.vm.name}/${b.disk.arrayId} has checksum ${r.checksum}, not that of [${x.tokens.join(' | ')}]`);
          else x.tokens = match;
        }
        for (const x of b.backups.values()) if (!rows.some((r) => r.id === x.id)) violate(`${label}: backup ${x.name} (row ${x.id}) of ${b.vm.name}/${b.name} is missing from the database`);
      }
      // The repository against the rows: every ok row's restic snapshot there, no snapshot without a row.
      const okRows = await q<{ id: number; name: string; restic_id: string | null; checksum: string }>(`SELECT id, name, restic_id, checksum FROM backup WHERE status = 1 AND type = 2`);
      if (!existsSync(cluster.resticRepo().repo)) {
        for (const r of okRows) violate(`${label}: backup ${r.name} (row ${r.id}) is ok but there is no restic repository`);
        return;
      }
      let snaps: Array<{ id: string; tags?: string[]; paths?: string[] }>;
      try {
        snaps = JSON.parse((await restic(['snapshots', '--json'])).toString() || '[]') as typeof snaps;
      } catch (err) {
        violate(`${label}: restic snapshots failed: ${(err as Error).message}`);
        return;
      }
      const same = (a: string, b: string) => a.startsWith(b) || b.startsWith(a);
      for (const r of okRows) {
        const s = r.restic_id ? snaps.find((x) => same(x.id, r.restic_id!)) : undefined;
        if (!s) {
          violate(`${label}: backup ${r.name} (row ${r.id}) is ok but restic has no snapshot ${r.restic_id}`);
          continue;
        }
        if (!(s.tags ?? []).includes(`bkp:${r.id}`)) violate(`${label}: restic snapshot ${s.id} of backup row ${r.id} is tagged ${JSON.stringify(s.tags)}`);
        if (final) {
          // The bytes restic holds are those the row's checksum names.
          const got = await restic(['dump', s.id, s.paths?.[0] ?? '/']).then(sha, (e: unknown) => `unreadable: ${(e as Error).message}`);
          if (got !== r.checksum) violate(`${label}: backup ${r.name} (row ${r.id}): restic holds ${got.slice(0, 200)}, the row says ${r.checksum}`);
        }
      }
      // A row of another status (a delete's check not yet run keeps it pending) still owns its snapshot.
      const allRows = await q<{ restic_id: string | null }>(`SELECT restic_id FROM backup WHERE type = 2`);
      for (const s of snaps) {
        const tag = (s.tags ?? []).find((t) => t.startsWith('bkp:'));
        const row = allRows.find((r) => r.restic_id !== null && same(s.id, r.restic_id));
        if (!row) violate(`${label}: orphan restic snapshot ${s.id} (${tag ?? 'untagged'}) with no backup row`);
      }
    };

    const OPS: Array<[number, (cx: ClientCtx, i: number) => Promise<string>]> = [
      [26, (cx, i) => doCreate(cx, i, false)],
      [7, (cx, i) => doCreate(cx, i, true)],
      [12, (cx, i) => doDelete(cx, i, false)],
      [6, (cx, i) => doDelete(cx, i, true)],
      [11, (cx, i) => doRollback(cx, i, false)],
      [7, (cx, i) => doRollback(cx, i, true)],
      [8, doNotePin],
      [5, doSync],
      [10, doRunNow],
      [6, (cx, i) => doCreate(cx, i, false, true)],
      ...(withBackups
        ? ([
            [6, doBackup],
            [4, doBackupRestore],
            [2, doBackupVerify],
            [2, doBackupDelete],
          ] as Array<[number, (cx: ClientCtx, i: number) => Promise<string>]>)
        : []),
    ];
    const totalW = OPS.reduce((a, [w]) => a + w, 0);
    const chooseOp = (r: () => number) => {
      let x = r() * totalW;
      for (const [w, f] of OPS) {
        if ((x -= w) < 0) return f;
      }
      return OPS[0]![1];
    };

    // ---- quiet points ------------------------------------------------------------------------
    const nChecks = o.checks ?? 2;
    const checkAt = Array.from({ length: nChecks }, (_, k) => Math.round(((k + 1) * o.ops) / (nChecks + 1)));
    let pause: { want: number; parked: number; release: () => void; resume: Promise<void>; reached: () => void; all: Promise<void> } | null = null;
    const parkIfPaused = async () => {
      if (!pause) return;
      pause.parked++;
      if (pause.parked === pause.want) pause.reached();
      await pause.resume;
    };

    const check = async (label: string): Promise<void> => {
      const ct = Date.now();
      // Every task final.
      const end = Date.now() + 240_000;
      let open = await q<{ id: string; state: string; kind: string }>(`SELECT id, state, kind FROM task WHERE state IN ('PENDING','STARTED')`);
      while (open.length > 0 && Date.now() < end) {
        await sleep(250);
        open = await q(`SELECT id, state, kind FROM task WHERE state IN ('PENDING','STARTED')`);
      }
      for (const t of open) violate(`${label}: task ${t.id} (${t.kind}) still ${t.state} after 4 min of quiet`);
      // What failed creates may have left is repair work too: the sync that destroys it (the
      // repair's, or the discard sweep's within a minute) must have run (src/snapshots/snapshot.discard.ts).
      let discards = await q<{ vm_uuid: string; disk_path: string; snapshot: string }>(`SELECT vm_uuid, disk_path, snapshot FROM snapshot_discard`);
      while (discards.length > 0 && Date.now() < end) {
        await sleep(500);
        discards = await q(`SELECT vm_uuid, disk_path, snapshot FROM snapshot_discard`);
      }
      for (const d of discards) violate(`${label}: ${d.snapshot} of ${d.vm_uuid}/${d.disk_path}, left by a failed create, still not destroyed after 4 min of quiet`);
      while (Date.now() < end && (await q<{ id: string }>(`SELECT id FROM task WHERE state IN ('PENDING','STARTED')`)).length > 0) await sleep(250);
      const stuck = await q<{ id: number; name: string; status: number }>(`SELECT id, name, status FROM snapshot WHERE status IN (2, 3, 4)`);
      for (const s of stuck) violate(`${label}: snapshot row ${s.id} (${s.name}) has status ${s.status === 2 ? 'pending' : s.status === 3 ? 'rollback' : 'lost'}`);
      for (const vm of vms) {
        const rows = await q<{ id: number; name: string; disk_real_id: number; status: number; pinned: number; note: string; type: number }>(
          `SELECT s.id, s.name, s.disk_real_id, s.status, s.pinned, s.note, s.type FROM snapshot s WHERE s.vm_uuid = $1`,
          [vm.uuid],
        );
        for (const d of vm.disks) {
          const realId = d.realId;
          const dRows = rows.filter((x) => x.disk_real_id === realId);
          // Resolve the "maybe" snapshots from the rows.
          for (const s of [...d.snaps.values()]) {
            const row = dRows.find((x) => x.name === s.name);
            if (s.state === 'maybe') {
              if (row) {
                s.state = 'present';
                s.id = row.id;
              } else d.snaps.delete(s.name);
            }
          }
          for (const row of dRows) {
            const s = d.snaps.get(row.name);
            if (!s) {
              violate(`${label}: ${vm.name} disk ${d.arrayId} (${d.kind}) has row ${row.id} "${row.name}" the model does not know`);
              continue;
            }
            if (s.id !== row.id) violate(`${label}: ${vm.name} disk ${d.arrayId} "${row.name}" is row ${row.id}, the model says ${s.id}`);
            if (s.pinned !== null && Boolean(row.pinned) !== s.pinned) violate(`${label}: ${vm.name}/${d.arrayId} "${row.name}" pinned=${row.pinned}, expected ${s.pinned}`);
            if (s.note !== null && row.note !== s.note) violate(`${label}: ${vm.name}/${d.arrayId} "${row.name}" note "${row.note}", expected "${s.note}"`);
            if (s.pinned === null) s.pinned = Boolean(row.pinned);
            if (s.note === null) s.note = row.note;
          }
          for (const s of d.snaps.values()) {
            if (!dRows.some((x) => x.name === s.name)) violate(`${label}: ${vm.name} disk ${d.arrayId} (${d.kind}): snapshot "${s.name}" (row ${s.id}) is missing from the database`);
          }
          // Storage against rows: no orphans, no duplicates, every row there with its content.
          const listed = await drivers.get(`${vm.node}/${d.kind}`)!.list({ path: d.path });
          const ids = listed.map((x) => x.id).filter((x) => /^[ae]s-\d+$/.test(x));
          // A type 2 backup's own snapshot (is-<backup id>) is destroyed when the backup ends, or by the cleanup of one cut off.
          for (const x of listed) if (/^is-/.test(x.id)) violate(`${label}: ${vm.name} disk ${d.arrayId} (${d.kind}) still holds the backup snapshot ${x.id}`);
          const seen = new Set<string>();
          for (const id of ids) {
            if (seen.has(id)) violate(`${label}: ${vm.name} disk ${d.arrayId} (${d.kind}) holds ${id} twice on storage`);
            seen.add(id);
            const n = Number(id.slice(3));
            if (!dRows.some((x) => x.id === n)) violate(`${label}: ${vm.name} disk ${d.arrayId} (${d.kind}): orphan ${id} on storage, no row`);
          }
          for (const row of dRows) {
            const id = `${row.type === 1 ? 'as' : 'es'}-${row.id}`;
            if (!seen.has(id)) {
              violate(`${label}: ${vm.name} disk ${d.arrayId} (${d.kind}): row ${row.id} "${row.name}" has no ${id} on storage`);
              continue;
            }
            const s = d.snaps.get(row.name);
            if (!s) continue;
            const got = await snapshotHash(vm, d, id).catch((e: unknown) => `unreadable: ${(e as Error).message}`);
            if (got !== hashOfToken(s.token)) {
              const other = [...hashCache].find(([, h]) => h === got)?.[0];
              violate(`${label}: ${vm.name} disk ${d.arrayId} (${d.kind}) ${id} "${row.name}" does not hold the content written before it (${s.token}): it holds ${other !== undefined ? `the pattern of ${other || 'a new disk (zeros)'}` : got.slice(0, 200)}`);
            }
          }
          // The disk's own content.
          const got = await readRawOf(d.format, d.image).catch((e: unknown) => `unreadable: ${(e as Error).message}`);
          const match = d.content.find((t) => hashOfToken(t) === got);
          if (match === undefined) {
            const other = [...hashCache].find(([, h]) => h === got)?.[0];
            violate(`${label}: ${vm.name} disk ${d.arrayId} (${d.kind}) holds none of the expected contents [${d.content.join(' | ')}]: it holds ${other !== undefined ? `the pattern of ${other || 'a new disk (zeros)'}` : got.slice(0, 200)}`);
          }
          else d.content = [match];
        }
        // Retention of the definition (only after a run that completed with no fault around it).
        if (vm.retentionClean) {
          const defRows = rows.filter((x) => x.type === 1 && x.status === 1 && !x.pinned && d0(vm).snaps.get(x.name)?.define === vm.define.name);
          if (defRows.length > RETENTION) violate(`${label}: ${vm.name}/${vm.define.name} keeps ${defRows.length} snapshots, retention ${RETENTION}`);
        }
      }
      // Nothing esnap-named on storage outside the known disks' snapshot lists is checked by disk;
      // locks: no two tasks held one disk lock at once.
      await checkLocks(label);
      if (withBackups) await checkBackups(label, label === 'final check');
      log(`chaos: ${label}: checked in ${((Date.now() - ct) / 1000).toFixed(1)} s, ${violations.length} violations so far`);
    };
    const d0 = (vm: VmM) => vm.disks[vm.define.disk - 1]!;

    /**
     * No two tasks held one disk lock at once. Which task took which lock: every row esnap inserts
     * into task_lock is copied by a trigger the harness installs (below) into chaos_lock_log, in the
     * same transaction, so no lock is missed however short it was held. When: from the task log's
     * times, the task's PENDING row (the lock is taken with it) to its final row (released with it).
     */
    const checkLocks = async (label: string) => {
      const rows = await q<{ key: string; task_id: string; start: string; end: string | null }>(
        `SELECT l.key, l.task_id, COALESCE(p.time, t.created) AS start, COALESCE(f.time, t.finished) AS end
           FROM (SELECT DISTINCT key, task_id FROM chaos_lock_log WHERE key LIKE 'vm_snapshot %' OR key LIKE 'vm_backup %') l
           JOIN task t ON t.id = l.task_id
           LEFT JOIN (SELECT task_id, min(time) AS time FROM task_log WHERE status = 'PENDING' GROUP BY task_id) p ON p.task_id = l.task_id
           LEFT JOIN (SELECT task_id, max(time) AS time FROM task_log WHERE status IN ('SUCCESS', 'FAILURE', 'REVOKED') GROUP BY task_id) f ON f.task_id = l.task_id
          ORDER BY l.key, 3`,
      );
      for (let k = 1; k < rows.length; k++) {
        const prev = rows[k - 1]!;
        const cur = rows[k]!;
        if (prev.key !== cur.key) continue;
        if (prev.end === null || Date.parse(prev.end) > Date.parse(cur.start)) {
          violate(`${label}: lock ${cur.key} held by ${prev.task_id} (${prev.start}–${prev.end}) and ${cur.task_id} (from ${cur.start}) at once`);
        }
      }
      log(`chaos: ${label}: ${rows.length} lock holds checked`);
    };

    // ---- clients ---------------------------------------------------------------------------------
    const faultStep = faultsWanted > 0 ? o.ops / (faultsWanted + 1) : Infinity;
    let faultsDone = 0;
    /** An op's line in the history and its kind's count. */
    const recordOp = (c: number, i: number, startedAt: number, line: string, tag: string): void => {
      const kind = /^(.*?) c\d+(?:vm\d|lv[0-9a-f]{4})/.exec(line)?.[1] ?? 'other';
      kinds[kind] = (kinds[kind] ?? 0) + 1;
      history.push(`#${i} c${c} ${new Date(startedAt).toISOString().slice(11, 23)} ${line} (${Date.now() - startedAt} ms)${tag}`);
      opsDone++;
    };
    const client = async (c: number): Promise<void> => {
      const cx: ClientCtx = { c, r: prng(o.seed * 131 + c + 17), vms: [vms[2 * c]!, vms[2 * c + 1]!], bkpDefs: [] };
      cx.bkpDefs.push(...bkpDefs.filter((b) => cx.vms.includes(b.vm)));
      for (;;) {
        await parkIfPaused();
        // Keep pace with the fault injector: fault k lands before op (k + 1.5) × step.
        while (faultsDone < faultsWanted && opsStarted >= (faultsDone + 1.5) * faultStep) {
          await sleep(50);
          if (pause) await parkIfPaused();
        }
        if (opsStarted >= o.ops) return;
        const i = opsStarted++;
        if (checkAt.includes(i) && i > 0) await quietPoint(`quiet point at op ${i}`);
        const a = Date.now();
        let line: string;
        try {
          line = await chooseOp(cx.r)(cx, i);
        } catch (err) {
          line = `op threw: ${(err as Error).message}`;
          violate(`client ${c} op ${i} threw: ${(err as Error).stack ?? err}`, i);
        }
        count(line.split(' → ')[1]?.split(' ').pop() ?? 'other');
        recordOp(c, i, a, line, '');
        if (opsDone % 100 === 0) log(`chaos: ${opsDone}/${o.ops} ops, ${faultsDone} faults, ${violations.length} violations`);
      }
    };

    let faultBusy: Promise<void> = Promise.resolve();
    const quietPoint = async (label: string): Promise<void> => {
      // The other clients park; the fault injector finishes its current fault.
      let reached!: () => void;
      let release!: () => void;
      const all = new Promise<void>((r) => (reached = r));
      const resume = new Promise<void>((r) => (release = r));
      pause = { want: nClients - 1, parked: 0, release, resume, reached, all };
      if (pause.want > 0) await all;
      await faultBusy;
      await check(label);
      const p = pause;
      pause = null;
      p.release();
    };

    // ---- faults ----------------------------------------------------------------------------------
    const KINDS = ['kill server', 'kill agent', 'pg restart', 'storage full', 'guest hang', 'slow disk'] as const;
    type Kind = (typeof KINDS)[number];
    const firstRound = [...KINDS].sort(() => rngFault() - 0.5);
    const chooseFault = (k: number): Kind => {
      if (k < firstRound.length) return firstRound[k]!;
      const x = rngFault();
      return x < 0.3 ? 'kill server' : x < 0.6 ? 'kill agent' : x < 0.7 ? 'pg restart' : x < 0.8 ? 'storage full' : x < 0.9 ? 'guest hang' : 'slow disk';
    };
    const faultNames: Record<Kind, string> = {
      'kill server': 'server kills',
      'kill agent': 'agent kills',
      'pg restart': 'pg restarts',
      'storage full': 'storage fills',
      'guest hang': 'guest hangs',
      'slow disk': 'slow disks',
    };
    const guestRng = prng(o.seed * 31 + 5);
    const inject = async (kind: Kind): Promise<string> => {
      switch (kind) {
        case 'kill server': {
          const i = between(rngFault, 0, 1);
          const s = cluster.servers[i]!;
          const close = cluster.open('kill', s.name);
          await cluster.kill(s);
          const down = between(rngFault, 200, 3000);
          await sleep(down);
          await cluster.startServer(i);
          close();
          return `kill -9 ${s.name}, back after ${down} ms`;
        }
        case 'kill agent': {
          const i = between(rngFault, 0, 1);
          const a = cluster.agents[i]!;
          const close = cluster.open('kill', a.name);
          await cluster.kill(a);
          const down = between(rngFault, 200, 3000);
          await sleep(down);
          await cluster.startAgent(i);
          close();
          return `kill -9 agent ${a.name}, back after ${down} ms`;
        }
        case 'pg restart': {
          const close = cluster.open('pg', 'postgres');
          cluster.pg.stop();
          const down = between(rngFault, 500, 3000);
          await sleep(down);
          cluster.pg.start();
          close();
          return `PostgreSQL stopped for ${down} ms`;
        }
        case 'storage full': {
          const which = rngFault() < 0.5 ? 'btrfs' : 'zfs';
          const mount = which === 'btrfs' ? cluster.btrfs.mountpoint : cluster.zfs.mountpoint;
          const st = await statfs(mount);
          const size = st.blocks * st.bsize;
          const free = st.bavail * st.bsize;
          // Down to 4 % free: below the 5 % floor, yet room for a few small writes.
          const fill = Math.max(0, free - Math.round(size * 0.04));
          const file = join(mount, 'chaos-fill');
          const close = cluster.open('full', which);
          const r = await runner.run(['fallocate', '-l', String(fill), file], { timeoutMs: 120_000 });
          if (r.code !== 0) {
            // zfs-fuse has no fallocate: write it.
            const fh = await open(file, 'w');
            const chunk = Buffer.alloc(4 * MiB, 0x5a);
            try {
              for (let at = 0; at < fill; at += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, fill - at));
            } catch {
              /* full before the end: that is the point */
            } finally {
              await fh.close();
            }
          }
          const hold = between(rngFault, 1000, 4000);
          await sleep(hold);
          await rm(file, { force: true });
          close();
          return `${which} filled to 4 % free (${Math.round(fill / MiB)} MiB) for ${hold} ms`;
        }
        case 'guest hang': {
          const close = cluster.open('guest', 'guestvm');
          guest.script = { freeze: () => 'silence' };
          const name = `g${tokenN++}`;
          const started = Date.now();
          const res = await api(guestRng, 'POST', `/vm/guestvm/snapshot/${name}/`, { disk_id: 1, fsfreeze: true });
          let what = `${res?.status ?? 'lost'}`;
          if (res?.status === 201) {
            const end = await settle(guestRng, opsStarted, started, String(res.body.task_id), 'node1', 'file');
            what += ` ${end.outcome} ${JSON.stringify(end.result?.message ?? '')}`;
            if (end.outcome === 'ok') {
              const row = await read(guestRng, `/vm/guestvm/snapshot/${name}/`);
              if (row.body?.result?.fsfreeze !== false) violate(`guestvm ${name}: a snapshot whose freeze hung is flagged fsfreeze=${row.body?.result?.fsfreeze}`);
              if (!/freeze failed/.test(String(end.result?.message))) violate(`guestvm ${name}: the hung freeze is not reported: ${JSON.stringify(end.result)}`);
            }
          }
          guest.script = {};
          close();
          return `guest agent silent on freeze: create ${name} → ${what} in ${Date.now() - started} ms`;
        }
        case 'slow disk': {
          const i = between(rngFault, 0, 1);
          const a = cluster.agents[i]!;
          const close = cluster.open('slow', a.name);
          // A graceful stop (running tasks finish), then the agent with every storage step delayed.
          a.downSince = Date.now();
          await a.p?.stop('SIGTERM');
          await cluster.startAgent(i, 150);
          const hold = between(rngFault, 2000, 6000);
          await sleep(hold);
          a.downSince = Date.now();
          await a.p?.stop('SIGTERM');
          await cluster.startAgent(i);
          close();
          return `agent ${a.name} storage slowed by 150 ms a step for ${hold} ms`;
        }
      }
    };
    const injector = async (): Promise<void> => {
      for (let k = 0; k < faultsWanted; k++) {
        while (opsStarted < (k + 1) * faultStep && opsDone < o.ops) await sleep(50);
        while (pause) await sleep(50);
        const kind = chooseFault(k);
        let done!: () => void;
        faultBusy = new Promise<void>((r) => (done = r));
        const a = Date.now();
        try {
          const what = await inject(kind);
          history.push(`## fault ${k + 1} ${new Date(a).toISOString().slice(11, 23)} ${what}`);
          faultCounts[faultNames[kind]] = (faultCounts[faultNames[kind]] ?? 0) + 1;
        } catch (err) {
          violate(`fault ${kind} could not be injected or undone: ${(err as Error).stack ?? err}`);
          // Bring everything back if something stayed down.
          for (const [i, s] of cluster.servers.entries()) if (s.downSince !== null || !s.p?.alive()) await cluster.startServer(i).catch(() => undefined);
          for (const [i, ag] of cluster.agents.entries()) if (ag.downSince !== null || !ag.p?.alive()) await cluster.startAgent(i).catch(() => undefined);
        } finally {
          faultsDone++;
          done();
        }
      }
    };

    const runStart = Date.now();
    await Promise.all([injector(), ...Array.from({ length: nClients }, (_, c) => client(c))]);
    const runSeconds = (Date.now() - runStart) / 1000;
    // Coverage: a backup kind that the random run never reached (under load every backup of a
    // client may have ended unknown when its restores, verifies or deletes came up, which then fall
    // back to a backup) runs once more now, after the last fault, through the same model and checks.
    const backupKinds: ReadonlyArray<[string, (cx: ClientCtx, i: number) => Promise<string>]> = [
      ['backup restore', doBackupRestore],
      ['backup verify', doBackupVerify],
      ['backup delete', doBackupDelete],
    ];
    if (withBackups && backupKinds.some(([k]) => (kinds[k] ?? 0) === 0)) {
      const cx: ClientCtx = { c: 0, r: prng(o.seed * 131 + 99), vms: [vms[0]!, vms[1]!], bkpDefs: bkpDefs.filter((b) => b.vm === vms[0] || b.vm === vms[1]) };
      const run1 = async (f: (cx: ClientCtx, i: number) => Promise<string>): Promise<void> => {
        const i = opsStarted++;
        const a = Date.now();
        recordOp(0, i, a, await f(cx, i), ' [coverage]');
      };
      for (let n = 0; n < 3 && presentBackups(cx).length === 0; n++) await run1(doBackup);
      for (const [k, f] of backupKinds) {
        if ((kinds[k] ?? 0) > 0) continue;
        log(`chaos: coverage: ${k} was never reached in the random run; once more after the last fault`);
        await run1(f);
      }
    }
    // Processes that died on their own are violations too.
    for (const p of [...cluster.servers, ...cluster.agents]) if (!p.p?.alive()) violate(`${p.name} is not running at the end: ${p.p?.output().slice(-2000)}`);
    await check('final check');
    const planted: string[] = [];
    if (o.plant) {
      const before = violations.length;
      const vm = vms[0]!;
      const zd = vm.disks.find((d) => d.kind === 'zfs')!;
      const zcfg = cluster.storagesOf(vm.node).find((x) => x.name === 'zfs')!;
      await zfsRun(['snapshot', `${zcfg.dataset}/${zd.path}@es-999999`]);
      const fd = vm.disks.find((d) => d.kind === 'file')!;
      const keep = fd.content;
      await writeToken(fd, 'planted');
      fd.content = keep;
      const other = vms[1]!;
      const victim = other.disks.flatMap((d) => [...d.snaps.values()].filter((x) => x.state === 'present' && x.id !== null))[0];
      if (victim) await q('DELETE FROM snapshot WHERE id = $1', [victim.id]);
      // A backup row deleted behind esnap's back: its restic snapshot is an orphan, the model misses it.
      const bvictim = bkpDefs.flatMap((b) => [...b.backups.values()])[0];
      if (bvictim) await q('DELETE FROM backup WHERE id = $1', [bvictim.id]);
      await check('planted check');
      planted.push(...violations.splice(before).map((v) => v.what));
    }
    const total = Object.values(faultCounts).reduce((a, b) => a + b, 0);
    return {
      seed: o.seed,
      ops: o.ops,
      faults: faultCounts,
      violations,
      seconds: runSeconds,
      opsPerS: o.ops / runSeconds,
      outcomes,
      kinds,
      history,
      planted,
      summary() {
        const kinds = Object.entries(faultCounts).map(([k, n]) => `${n} ${k}`).join(', ');
        return `chaos: ${o.ops} ops, ${total} faults${kinds ? ` (${kinds})` : ''}, ${violations.length} violations`;
      },
    };
  } finally {
    await guest.stop().catch(() => undefined);
    await db.end().catch(() => undefined);
    await cluster.stop();
    await cleanupDomains(domains).catch((e: unknown) => log(`chaos: libvirt clean-up: ${(e as Error).message}`));
  }
}

/** The lines of history around each violation (by op index), for the report. */
export function explain(report: ChaosReport, around = 6): string[] {
  const out: string[] = [];
  for (const v of report.violations) {
    out.push(`violation (seed ${report.seed}, op ${v.op}): ${v.what}`);
    const at = report.history.findIndex((h) => h.startsWith(`#${v.op} `));
    const from = Math.max(0, (at < 0 ? report.history.length : at) - around);
    for (const h of report.history.slice(from, from + 2 * around + 1)) out.push(`    ${h}`);
  }
  return out;
}
