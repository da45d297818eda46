/**
 * The kill -9 series of rollbacks and restores: a real `esnap serve` (own process group) on a file
 * or qcow2 storage, a disk of `sizeMiB` filled with data, a snapshot, a change; then, again and
 * again, a rollback (or a restore into a second VM's disk) is started and the server's process
 * group (or only its PID) is killed at a random instant, the server restarted and its recovery
 * awaited. After each kill the image must hold exactly its old content or the snapshot's (every
 * byte compared, through qemu-io's pattern check), nothing may be left aside (temporaries, journal
 * entries, undo snapshots), and the disk must take a new snapshot (so it is not flagged damaged).
 *
 * Used by test/crash/kill-series.test.ts (a few kills) and bench/crash-series.ts (the full series).
 *
 * Contents: the snapshot holds pattern 0x22 everywhere; after the change the rollback source holds
 * 0xcc in its first half; a restore target holds 0x33 everywhere.
 */
import { mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../src/db/dialect.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { sleep, startServe, type EsnapServe } from '../helpers/esnap-process.js';

/** The bootstrap admin's key of the series' servers (no test helper import: bench/ compiles this file). */
const ADMIN_KEY = 'kill-series-admin-key-0123456789abcdef';

export type SeriesDriver = 'file' | 'qcow2';
export type SeriesOp = 'rollback' | 'restore';

export interface SeriesOptions {
  readonly driver: SeriesDriver;
  readonly op: SeriesOp;
  readonly kills: number;
  readonly sizeMiB: number;
  /** Folder under which the data dir is made (its filesystem decides reflink or copy); default tmpdir(). */
  readonly parent?: string;
  /** Kill only the server's PID instead of its process group. */
  readonly pidOnly?: boolean;
  readonly log?: (line: string) => void;
}

export type ImageState = 'old' | 'snapshot' | 'other';

export interface KillOutcome {
  /** Milliseconds after the request when the kill landed. */
  readonly atMs: number;
  /** The image after restart and recovery. */
  readonly state: ImageState;
  /** The task's final status (SUCCESS when it finished before the kill or was resent after it). */
  readonly task: string;
  /** Whether the disk is left unflagged (a new snapshot of it is accepted; one real probe ends the series). */
  readonly usable: boolean;
  /** Files, journal entries or qcow2 tags the operation left aside. */
  readonly leftovers: string[];
}

export interface SeriesReport {
  readonly driver: SeriesDriver;
  readonly op: SeriesOp;
  readonly sizeMiB: number;
  /** One uninterrupted operation, request to SUCCESS. */
  readonly opMs: number;
  readonly outcomes: KillOutcome[];
}

const runner = new NodeCommandRunner();
const MiB = 1024 * 1024;

async function must(argv: string[]): Promise<void> {
  const r = await runner.run(argv, { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr || r.stdout}`);
}

/** Ends when the task is no longer PENDING/STARTED; returns its status. */
async function taskEnd(s: EsnapServe, taskId: string, ms = 600_000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const st = await s.api('GET', `/api/task/${taskId}/status/`);
    const status = String(st.body?.status);
    if (status !== 'PENDING' && status !== 'STARTED') return status;
    if (Date.now() > end) throw new Error(`task ${taskId} still ${status} after ${ms} ms`);
    await sleep(50);
  }
}

/** Waits until no task runs or waits (the repair sync after a restart included). */
async function settle(s: EsnapServe): Promise<void> {
  for (let i = 0; i < 12_000; i++) {
    const t = await s.api('GET', '/api/task/');
    if (Array.isArray(t.body) && t.body.length === 0) return;
    await sleep(50);
  }
  throw new Error('tasks did not drain');
}

export async function runKillSeries(o: SeriesOptions): Promise<SeriesReport> {
  const log = o.log ?? (() => undefined);
  const dir = await mkdtemp(join(o.parent ?? tmpdir(), 'esnap-kill-'));
  const root = join(dir, 'storage');
  const env: Record<string, string> = {
    ESNAP_DATA_DIR: dir,
    ESNAP_ADMIN_API_KEY: ADMIN_KEY,
    ESNAP_NODE: 'killnode',
    ESNAP_LOCAL_AGENT: '1',
    ESNAP_STORAGES: JSON.stringify([{ name: 'default', driver: o.driver, root }]),
  };
  const fmt = o.driver === 'qcow2' ? 'qcow2' : 'raw';
  const size = o.sizeMiB * MiB;
  const half = size / 2;
  let server: EsnapServe | null = await startServe(env, { group: true });
  const api = (m: string, p: string, b?: unknown) => server!.api(m, p, b);
  try {
    const image = async (vm: string): Promise<string> => {
      const d = await api('GET', `/api/vm/${vm}/define/disk/1/`);
      return join(root, d.body.result.path as string);
    };
    const vms = o.op === 'restore' ? ['src', 'dst'] : ['src'];
    for (const vm of vms) {
      if ((await api('POST', `/api/vm/${vm}/define/`, {})).status !== 201) throw new Error(`cannot define ${vm}`);
      const d = await api('POST', `/api/vm/${vm}/define/disk/1/`, { size: o.sizeMiB });
      if (d.status !== 201) throw new Error(`cannot define the disk of ${vm}: ${JSON.stringify(d.body)}`);
      await settle(server);
    }
    const srcImage = await image('src');
    const target = o.op === 'restore' ? await image('dst') : srcImage;
    // Reference contents as raw files beside the storage; every image check is `qemu-img compare`
    // against them (all bytes; qemu-io's pattern reads are far slower on large images).
    const refSnap = join(dir, 'ref-snapshot.raw');
    const refOld = join(dir, 'ref-old.raw');
    await fillRaw(refSnap, size, [[0x22, 0, size]]);
    await fillRaw(refOld, size, o.op === 'restore' ? [[0x33, 0, size]] : [[0xcc, 0, half], [0x22, half, half]]);
    const load = (ref: string, path: string) =>
      fmt === 'raw' ? copyRaw(ref, path) : must(['qemu-img', 'convert', '-n', '-t', 'writeback', '-f', 'raw', '-O', 'qcow2', ref, path]);
    const same = async (ref: string): Promise<boolean> =>
      (await runner.run(['qemu-img', 'compare', '-U', '-q', '-f', fmt, '-F', 'raw', target, ref], { timeoutMs: 600_000 })).code === 0;
    const stateOf = async (): Promise<ImageState> => ((await same(refSnap)) ? 'snapshot' : (await same(refOld)) ? 'old' : 'other');
    const makeOld = (): Promise<void> => load(refOld, target);

    await load(refSnap, srcImage);
    const snap = await api('POST', '/api/vm/src/snapshot/base/', { disk_id: 1 });
    if (snap.status !== 201 || (await taskEnd(server, snap.body.task_id)) !== 'SUCCESS') throw new Error('base snapshot failed');
    await makeOld();
    const body = o.op === 'restore' ? { disk_id: 1, force: true, target_hostname_or_uuid: 'dst', target_disk_id: 1 } : { disk_id: 1, force: true };
    const start = () => api('PUT', '/api/vm/src/snapshot/base/', body);

    // One uninterrupted operation: how long the kills have to land in.
    let t0 = Date.now();
    const first = await start();
    if (first.status !== 201 || (await taskEnd(server, first.body.task_id)) !== 'SUCCESS') throw new Error(`${o.op} failed: ${JSON.stringify(first.body)}`);
    const opMs = Date.now() - t0;
    if ((await stateOf()) !== 'snapshot') throw new Error(`an uninterrupted ${o.op} did not give the snapshot's content`);
    log(`${o.driver} ${o.op} ${o.sizeMiB} MiB: ${opMs} ms uninterrupted`);
    await makeOld();

    const outcomes: KillOutcome[] = [];
    for (let k = 0; k < o.kills; k++) {
      // Up to half again the uninterrupted time: some kills land after the end (a loaded machine runs slower).
      const atMs = Math.round(Math.random() * opMs * 1.5);
      t0 = Date.now();
      const started = await start();
      if (started.status !== 201) throw new Error(`${o.op} refused: ${JSON.stringify(started.body)}`);
      const taskId = started.body.task_id as string;
      await sleep(Math.max(0, atMs - (Date.now() - t0)));
      const landed = Date.now() - t0;
      if (o.pidOnly) await server.stop('SIGKILL');
      else await server.killGroup();
      server = null;
      server = await startServe(env, { group: true });
      const task = await taskEnd(server, taskId);
      await settle(server);
      const state = await stateOf();
      const leftovers = await leftoversOf(o.driver, root, target);
      // Usable: not flagged damaged (read from the database: a probe snapshot per kill would copy
      // the whole disk on a filesystem without reflinks); the series ends with one real probe.
      const damaged = await damageOf(dir, o.op === 'restore' ? 'dst' : 'src');
      const usable = damaged === null;
      outcomes.push({ atMs: landed, state, task, usable, leftovers });
      log(`  kill ${k + 1}/${o.kills} at ${landed} ms: ${state}, task ${task}, ${usable ? 'usable' : `flagged damaged (${damaged})`}${leftovers.length ? `, leftovers ${leftovers.join(' ')}` : ''}`);
      if (state === 'snapshot') await makeOld();
      if (state === 'other') break; // the disk is broken: further kills measure nothing
    }
    // The disk takes a new snapshot after all those kills.
    const vm = o.op === 'restore' ? 'dst' : 'src';
    const probe = await api('POST', `/api/vm/${vm}/snapshot/probe/`, { disk_id: 1 });
    const probeOk = probe.status === 201 && (await taskEnd(server, probe.body.task_id)) === 'SUCCESS';
    if (!probeOk) throw new Error(`after the series the disk takes no snapshot: ${probe.status} ${JSON.stringify(probe.body)}`);
    return { driver: o.driver, op: o.op, sizeMiB: o.sizeMiB, opMs, outcomes };
  } finally {
    await server?.killGroup();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A raw file of `size` bytes holding each `[pattern, offset, length]`. */
async function fillRaw(path: string, size: number, parts: Array<[number, number, number]>): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(size);
    for (const [pattern, off, len] of parts) {
      const chunk = Buffer.alloc(4 * MiB, pattern);
      for (let at = off; at < off + len; at += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, off + len - at), at);
    }
  } finally {
    await fh.close();
  }
}

/** Overwrites the raw image `dst` with `src`'s bytes, in place (esnap's view of the image does not change). */
async function copyRaw(src: string, dst: string): Promise<void> {
  const from = await open(src, 'r');
  const to = await open(dst, 'r+');
  try {
    const buf = Buffer.alloc(4 * MiB);
    for (let at = 0; ; at += buf.length) {
      const { bytesRead } = await from.read(buf, 0, buf.length, at);
      if (bytesRead === 0) break;
      await to.write(buf, 0, bytesRead, at);
    }
  } finally {
    await from.close();
    await to.close();
  }
}

/** The damaged flag of a VM's first disk, read from the server's SQLite database. */
async function damageOf(dataDir: string, hostname: string): Promise<string | null> {
  const { db } = openDatabase(`sqlite:${join(dataDir, 'esnap.db')}`);
  try {
    // An esnap without the flag (before migration 0003) reads as "cannot tell", never as whole.
    const row = await db
      .selectFrom('vm_disk')
      .innerJoin('vm', 'vm.uuid', 'vm_disk.vm_uuid')
      .select('vm_disk.damaged')
      .where('vm.hostname', '=', hostname)
      .executeTakeFirstOrThrow();
    return row.damaged;
  } catch (err) {
    return `unknown: ${(err as Error).message}`;
  } finally {
    await db.destroy();
  }
}

/** What a rollback or restore may leave aside: temporaries next to the image, journal entries, the qcow2 undo tag. */
async function leftoversOf(driver: SeriesDriver, root: string, image: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(root)) if (name.includes('.tmp-')) out.push(name);
  for (const journal of [join(root, '.esnap-journal'), join(root, '.esnap', '.journal')]) {
    const entries = await readdir(journal).catch(() => [] as string[]);
    out.push(...entries.map((e) => `journal:${e}`));
  }
  if (driver === 'qcow2' && (await stat(image).catch(() => null))) {
    const r = await runner.run(['qemu-img', 'snapshot', '-U', '-l', image]);
    if (r.stdout.includes('esnap-restore-undo')) out.push('qcow2 tag esnap-restore-undo');
  }
  return out;
}
