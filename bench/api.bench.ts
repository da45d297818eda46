/**
 * Issue 2 benchmarks, each beside its baseline measured in the same run:
 * 1. GET /api/vm/<h>/snapshot?full=true with 300, 3,000 and 30,000 snapshots vs a bare node:http
 *    server sending JSON.stringify of the same objects (issue 17 target: ≥ 40 % of its throughput);
 *    on PostgreSQL when ESNAP_DATABASE_URL is set. `api.bench.js list 300,3000` picks the sizes;
 *    BENCH_ONLY=esnap|floor measures one side (for `node --cpu-prof`).
 * 2. snapshot create end to end (POST with ES-STREAM until the final JSON) vs the bare driver
 *    create on the same disk (target: median overhead < 10 ms);
 * 3. server memory after 100,000 snapshot rows over 1,000 VMs and listing one VM (target < 250 MB RSS).
 */
import { mkdtemp, rm, open, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createRuntime } from '../src/runtime.js';
import { bossSchemaFor } from '../src/queue/pgboss.queue.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { insertVm as insertVmRow, newVmRow } from '../src/vms/vm.repository.js';
import { FileDriver } from '../src/storage/file/file.driver.js';
import { NodeCommandRunner } from '../src/storage/node-runner.js';
import { combine, fmt, loadInChild, percentile, type LoadResult } from './lib.js';

const KEY = 'bench-admin-key-0123456789abcdef';

async function insertVm(rt: Awaited<ReturnType<typeof createRuntime>>, hostname: string, root: string, withImage: boolean) {
  const db = rt.ctx.db;
  const node = await db.selectFrom('node').selectAll().executeTakeFirstOrThrow();
  const storage = await db.selectFrom('node_storage').selectAll().executeTakeFirstOrThrow();
  const uuid = randomUUID();
  const now = new Date().toISOString();
  await insertVmRow(db, newVmRow({ uuid, hostname, dc_id: 1, owner_id: 1, node_id: node.id, status: 1 }, now));
  await db.insertInto('vm_disk').values({ vm_uuid: uuid, real_id: 0, storage_id: storage.id, path: `${uuid}-disk0`, size_mb: 64, created: now }).execute();
  if (withImage) {
    const fh = await open(join(root, `${uuid}-disk0`), 'w');
    await fh.truncate(64 * 1024 * 1024);
    await fh.write(Buffer.alloc(4 * 1024 * 1024, 7), 0, 4 * 1024 * 1024, 0);
    await fh.close();
  }
  return { uuid, storageId: storage.id };
}

async function insertSnapshots(rt: Awaited<ReturnType<typeof createRuntime>>, vmUuid: string, storageId: number, n: number, from = 0) {
  const now = new Date().toISOString();
  const rows = Array.from({ length: n }, (_, i) => ({
    vm_uuid: vmUuid, define_id: null, name: `snap-${from + i}`, type: 2, status: 1, storage_id: storageId, size: 4096 * i,
    note: 'benchmark row', fsfreeze: 0, pinned: 0, disk_real_id: 0, status_change: now, created: now, changed: now,
  }));
  for (let i = 0; i < rows.length; i += 500) await rt.ctx.db.insertInto('snapshot').values(rows.slice(i, i + 500)).execute();
}

/**
 * Where the list runs: SQLite in a temporary folder, or PostgreSQL when ESNAP_DATABASE_URL is set
 * (a fresh schema in that database, dropped afterwards).
 */
async function listRuntime(dir: string, root: string): Promise<{ rt: Awaited<ReturnType<typeof createRuntime>>; drop(): Promise<void>; where: string }> {
  const pgUrl = process.env['ESNAP_DATABASE_URL'];
  const storages = [{ name: 'default', driver: 'file' as const, root }];
  if (!pgUrl) {
    const rt = await createRuntime({ databaseUrl: `sqlite:${join(dir, 'esnap.db')}`, adminApiKey: KEY, node: 'bench', localAgent: true, storages });
    return { rt, drop: async () => undefined, where: 'SQLite' };
  }
  const schema = `bench_list_${process.pid}`;
  const pg = (await import('pg')).default;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const rt = await createRuntime({ databaseUrl: pgUrl, searchPath: schema, adminApiKey: KEY, node: 'bench', localAgent: true, storages });
  return {
    rt,
    where: 'PostgreSQL',
    drop: async () => {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.query(`DROP SCHEMA IF EXISTS ${bossSchemaFor(schema)} CASCADE`);
      await admin.end();
    },
  };
}

/**
 * BENCH_PROFILE=<prefix>: a CPU profile of the measured rounds only (not the set-up), written to
 * <prefix>-<n>.cpuprofile; summarise it with `node dist/bench/profile-summary.js <file>`.
 */
async function startProfile(): Promise<{ stop(tag: string): Promise<void> } | undefined> {
  const prefix = process.env['BENCH_PROFILE'];
  if (!prefix) return undefined;
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return {
    async stop(tag) {
      const { profile } = await session.post('Profiler.stop');
      await writeFile(`${prefix}-${tag}.cpuprofile`, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

/**
 * GET /api/vm/<h>/snapshot/?full=true with `n` snapshots, against the floor: a bare node:http
 * server that holds the same answer as objects (read once from esnap) and sends JSON.stringify of
 * them on every request, i.e. the cost of the bytes alone. The load comes from another process,
 * in rounds that alternate which side goes first.
 */
async function listBench(n: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-'));
  const root = join(dir, 'storage');
  const { rt, drop, where } = await listRuntime(dir, root);
  const vm = await insertVm(rt, 'bench01', root, false);
  await insertSnapshots(rt, vm.uuid, vm.storageId, n);
  const apiUrl = await rt.app.listen({ host: '127.0.0.1', port: 0 });
  const headers = { 'ES-API-KEY': KEY };
  const apiPath = `${apiUrl}/api/vm/bench01/snapshot/?full=true`;
  const answer = (await (await fetch(apiPath, { headers })).json()) as { status: string; result: unknown[]; task_id: string };
  if (answer.result.length !== n) throw new Error(`listed ${answer.result.length} of ${n}`);
  const floorServer = http.createServer((_req, res) => {
    const body = JSON.stringify(answer);
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((r) => floorServer.listen(0, '127.0.0.1', r));
  const floorUrl = `http://127.0.0.1:${(floorServer.address() as AddressInfo).port}/floor`;
  const only = process.env['BENCH_ONLY'];
  const rounds = n <= 300 ? 6 : n <= 3000 ? 4 : 2;
  const secs = n <= 3000 ? 2.5 : 5;
  await loadInChild(apiPath, headers, 1, 8); // warm-up
  await loadInChild(floorUrl, {}, 1, 8);
  const floorRounds: LoadResult[] = [];
  const apiRounds: LoadResult[] = [];
  // CPU of this process (it runs both servers, one at a time, and nothing else) per request: a
  // figure that the other sessions' load disturbs less than requests per second.
  const cpu = { floor: 0, api: 0 };
  const measured = async (side: 'floor' | 'api', url: string, h: Record<string, string>, out: LoadResult[]) => {
    const before = process.cpuUsage();
    out.push(await loadInChild(url, h, secs, 8));
    const d = process.cpuUsage(before);
    cpu[side] += d.user + d.system;
  };
  const profile = await startProfile();
  for (let r = 0; r < rounds; r++) {
    const floorRound = async () => {
      if (only !== 'esnap') await measured('floor', floorUrl, {}, floorRounds);
    };
    const apiRound = async () => {
      if (only !== 'floor') await measured('api', apiPath, headers, apiRounds);
    };
    for (const step of r % 2 === 0 ? [floorRound, apiRound] : [apiRound, floorRound]) await step();
  }
  await profile?.stop(`${n}`);
  const kb = Buffer.byteLength(JSON.stringify(answer)) / 1024;
  console.log(`list ${n} snapshots on ${where} (full=true, ${fmt(kb, 0)} KiB), 8 connections from a separate load process, ${rounds} alternating rounds of ${secs} s, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}:`);
  if (floorRounds.length) {
    const floor = combine(floorRounds);
    console.log(`  floor (node:http + JSON.stringify of the same objects): ${fmt(floor.rps)} req/s, p50 ${fmt(floor.p50)} ms, p99 ${fmt(floor.p99)} ms, server CPU ${fmt(cpu.floor / floor.requests, 0)} µs/request`);
  }
  if (apiRounds.length) {
    const api = combine(apiRounds);
    console.log(`  esnap GET /api/vm/<h>/snapshot/?full=true: ${fmt(api.rps)} req/s, p50 ${fmt(api.p50)} ms, p99 ${fmt(api.p99)} ms, server CPU ${fmt(cpu.api / api.requests, 0)} µs/request`);
    if (floorRounds.length) {
      const floor = combine(floorRounds);
      console.log(
        `  ratio: ${fmt((100 * api.rps) / floor.rps)} % of the floor's req/s, ${fmt((100 * (cpu.floor / floor.requests)) / (cpu.api / api.requests))} % by server CPU per request (target ≥ 40 %)`,
      );
    }
  }
  await new Promise((r) => floorServer.close(r));
  await rt.close();
  await drop();
  await rm(dir, { recursive: true, force: true });
}

async function createBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-'));
  const root = join(dir, 'storage');
  const rt = await createRuntime({
    databaseUrl: `sqlite:${join(dir, 'esnap.db')}`, adminApiKey: KEY, node: 'bench', localAgent: true,
    storages: [{ name: 'default', driver: 'file', root }],
  });
  const vm = await insertVm(rt, 'bench02', root, true);
  const url = await rt.app.listen({ host: '127.0.0.1', port: 0 });
  const driver = new FileDriver({ root, runner: new NodeCommandRunner() });
  const disk = { path: `${vm.uuid}-disk0` };
  const N = 40;
  const bare: number[] = [];
  const e2e: number[] = [];
  for (let i = 0; i < N; i++) {
    // Interleave the two so disk state and caches affect both alike, each going first every other time.
    const viaDriver = async (): Promise<void> => {
      const t0 = performance.now();
      await driver.create(disk, `es-${900000 + i}`, { name: `bare-${i}` });
      bare.push(performance.now() - t0);
    };
    const viaApi = async (): Promise<void> => {
      const t1 = performance.now();
      const r = await fetch(`${url}/api/vm/bench02/snapshot/s${i}/`, {
        method: 'POST',
        headers: { 'ES-API-KEY': KEY, 'ES-STREAM': 'es', 'Content-Type': 'application/json' },
        body: '{}',
      });
      const text = await r.text();
      e2e.push(performance.now() - t1);
      if (!text.trimStart().startsWith('200\n')) throw new Error(`create failed: ${text}`);
    };
    for (const step of i % 2 === 0 ? [viaDriver, viaApi] : [viaApi, viaDriver]) await step();
  }
  bare.sort((a, b) => a - b);
  e2e.sort((a, b) => a - b);
  const mb = percentile(bare, 50);
  const me = percentile(e2e, 50);
  console.log(`snapshot create, ${N} each, 64 MiB sparse disk with 4 MiB data, file driver on ${root}:`);
  console.log(`  bare driver create: median ${fmt(mb, 2)} ms, p90 ${fmt(percentile(bare, 90), 2)} ms`);
  console.log(`  POST + ES-STREAM to final JSON: median ${fmt(me, 2)} ms, p90 ${fmt(percentile(e2e, 90), 2)} ms`);
  console.log(`  median overhead: ${fmt(me - mb, 2)} ms (target < 10 ms)`);
  await rt.close();
  await rm(dir, { recursive: true, force: true });
}

async function memoryBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-'));
  const root = join(dir, 'storage');
  const rssBefore = process.memoryUsage().rss;
  const rt = await createRuntime({
    databaseUrl: `sqlite:${join(dir, 'esnap.db')}`, adminApiKey: KEY, node: 'bench', localAgent: true,
    storages: [{ name: 'default', driver: 'file', root }],
  });
  const t0 = performance.now();
  for (let v = 0; v < 1000; v++) {
    const vm = await insertVm(rt, `mem${String(v).padStart(4, '0')}`, root, false);
    await insertSnapshots(rt, vm.uuid, vm.storageId, 100);
  }
  const insertS = (performance.now() - t0) / 1000;
  const url = await rt.app.listen({ host: '127.0.0.1', port: 0 });
  const r = await fetch(`${url}/api/vm/mem0500/snapshot/?full=true`, { headers: { 'ES-API-KEY': KEY } });
  const body = (await r.json()) as { result: unknown[] };
  const all = await fetch(`${url}/api/node/bench/storage/default/snapshot/?vm=mem0999`, { headers: { 'ES-API-KEY': KEY } });
  await all.text();
  global.gc?.();
  const rss = process.memoryUsage().rss;
  const count = await rt.ctx.db.selectFrom('snapshot').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  console.log(`memory: ${Number(count.n)} snapshot rows over 1,000 VMs inserted in ${fmt(insertS)} s; one VM listed (${body.result.length} objects)`);
  console.log(`  RSS of the server process: ${fmt(rss / 1048576)} MB (before the server started: ${fmt(rssBefore / 1048576)} MB; target < 250 MB)`);
  await rt.close();
  await rm(dir, { recursive: true, force: true });
}

export async function run(): Promise<void> {
  const which = process.argv[2] ?? 'all';
  if (which === 'all' || which === 'memory') await memoryBench();
  const sizes = process.argv[3] ? process.argv[3].split(',').map(Number) : [300, 3000, 30000];
  if (which === 'all' || which === 'list') for (const n of sizes) await listBench(n);
  if (which === 'all' || which === 'create') await createBench();
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
