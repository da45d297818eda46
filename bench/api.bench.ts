/**
 * Issue 2 benchmarks, each beside its baseline measured in the same run:
 * 1. GET /api/vm/<h>/snapshot?full=true with 1,000 snapshots vs a bare route doing the same query
 *    and JSON serialisation (target: ≥ 70 % of the bare route's throughput);
 * 2. snapshot create end to end (POST with ES-STREAM until the final JSON) vs the bare driver
 *    create on the same disk (target: median overhead < 10 ms);
 * 3. server memory after 100,000 snapshot rows over 1,000 VMs and listing one VM (target < 250 MB RSS).
 */
import { mkdtemp, rm, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createRuntime } from '../src/runtime.js';
import { listSnapshots } from '../src/snapshots/snapshot.repository.js';
import { snapshotObject } from '../src/snapshots/snapshot.output.js';
import { vmDisks } from '../src/vms/vm.lookup.js';
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

async function listBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-'));
  const root = join(dir, 'storage');
  const rt = await createRuntime({
    databaseUrl: `sqlite:${join(dir, 'esnap.db')}`, adminApiKey: KEY, node: 'bench', localAgent: true,
    storages: [{ name: 'default', driver: 'file', root }],
  });
  const vm = await insertVm(rt, 'bench01', root, false);
  await insertSnapshots(rt, vm.uuid, vm.storageId, 1000);
  // The floor: the same query and JSON serialisation, without auth, checks or the envelope.
  const floorApp = (await import('fastify')).default();
  floorApp.get('/floor', async (_req, reply) => {
    const rows = await listSnapshots(rt.ctx.db, { vmUuid: vm.uuid }, [{ field: 'created', desc: true }]);
    const disks = await vmDisks(rt.ctx.db, vm.uuid);
    return reply.type('application/json').send(JSON.stringify(rows.map((r) => snapshotObject(r, disks))));
  });
  const apiUrl = await rt.app.listen({ host: '127.0.0.1', port: 0 });
  const floorUrl = await floorApp.listen({ host: '127.0.0.1', port: 0 });
  const headers = { 'ES-API-KEY': KEY };
  const apiPath = `${apiUrl}/api/vm/bench01/snapshot/?full=true`;
  // The load comes from another process (this one runs both servers and must not also run the
  // client), in rounds that alternate which side goes first.
  await loadInChild(apiPath, headers, 1, 8); // warm-up
  await loadInChild(`${floorUrl}/floor`, {}, 1, 8);
  const floorRounds: LoadResult[] = [];
  const apiRounds: LoadResult[] = [];
  const ROUNDS = 6;
  for (let r = 0; r < ROUNDS; r++) {
    const floorRound = async () => floorRounds.push(await loadInChild(`${floorUrl}/floor`, {}, 2.5, 8));
    const apiRound = async () => apiRounds.push(await loadInChild(apiPath, headers, 2.5, 8));
    if (r % 2 === 0) {
      await floorRound();
      await apiRound();
    } else {
      await apiRound();
      await floorRound();
    }
  }
  const floor = combine(floorRounds);
  const api = combine(apiRounds);
  console.log(`list 1,000 snapshots (full=true), 8 connections from a separate load process, ${ROUNDS} alternating rounds of 2.5 s each:`);
  console.log(`  floor (bare route, same query + JSON): ${fmt(floor.rps)} req/s, p50 ${fmt(floor.p50)} ms, p99 ${fmt(floor.p99)} ms`);
  console.log(`  esnap GET /api/vm/<h>/snapshot/?full=true: ${fmt(api.rps)} req/s, p50 ${fmt(api.p50)} ms, p99 ${fmt(api.p99)} ms`);
  console.log(`  ratio: ${fmt((100 * api.rps) / floor.rps)} % of the floor (target ≥ 70 %)`);
  await floorApp.close();
  await rt.close();
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
  if (which === 'all' || which === 'list') await listBench();
  if (which === 'all' || which === 'create') await createBench();
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
