/**
 * Issue 6 and issue 17 benchmark: 1,000 snapshot creates submitted at once over the API, time until
 * every task has ended and snapshots per second, in cluster mode (two servers, PostgreSQL and
 * pg-boss, with 1, 2 and 4 `esnap agent` processes, one node each, the creates spread over them)
 * beside embedded mode (one server, SQLite, in-process queue and agent) on the same machine in the
 * same run. Each create is on a disk of its own (one disk lock per task), 1 MiB sparse images on
 * `file` storages on tmpfs (/dev/shm when it exists).
 *
 * End-to-end create latency, per mode: p50/p99 of (task finished − request sent) over the burst,
 * and over 50 creates sent one after another (each waited for), the latency without a queue.
 *
 *   npm run build && node dist/bench/cluster.bench.js [count] [agents,…]   (default 1000 1,2,4)
 *
 * PostgreSQL: ESNAP_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import http from 'node:http';
import { existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { bossSchemaFor } from '../src/queue/pgboss.queue.js';
import { fmt, percentile } from './lib.js';

const KEY = 'bench-admin-key-0123456789abcdef';
const PG_URL = process.env['ESNAP_TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const COUNT = Number(process.argv[2] ?? 1000);
const AGENTS = (process.argv[3] ?? '1,2,4').split(',').map(Number);
const SEQUENTIAL = 50;
/** tmpfs for the storages and the SQLite file when there is one. */
const TMP = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Result {
  mode: string;
  seconds: number;
  submitSeconds: number;
  perSecond: number;
  failed: number;
  /** Burst: task finished − request sent, ms, sorted. */
  burst: number[];
  /** One create at a time. */
  sequential: number[];
  load: string;
}

async function addVms(rt: Runtime, node: string, prefix: string, n: number): Promise<string[]> {
  const db = rt.ctx.db;
  const nodeRow = await db.selectFrom('node').selectAll().where('hostname', '=', node).executeTakeFirstOrThrow();
  const storage = await db.selectFrom('node_storage').selectAll().where('node_id', '=', nodeRow.id).executeTakeFirstOrThrow();
  const root = (JSON.parse(storage.config) as { root: string }).root;
  await mkdir(root, { recursive: true });
  const now = new Date().toISOString();
  const names: string[] = [];
  const vms = [];
  const disks = [];
  for (let i = 0; i < n; i++) {
    const uuid = randomUUID();
    const hostname = `${prefix}${String(i).padStart(4, '0')}`;
    names.push(hostname);
    vms.push({
      uuid, hostname, alias: hostname, dc_id: 1, owner_id: 1, node_id: nodeRow.id, brand: 'kvm', status: 1, status_change: now,
      qmp_socket: null, qga_socket: null, snapshot_limit_manual: null, snapshot_limit_auto: null, snapshot_size_limit: null,
      snapshot_size_percent_limit: null, created: now, changed: now,
    });
    disks.push({ vm_uuid: uuid, real_id: 0, storage_id: storage.id, path: `${uuid}-disk0`, size_mb: 1, created: now });
    const fh = await open(join(root, `${uuid}-disk0`), 'w');
    await fh.truncate(1024 * 1024);
    await fh.write(Buffer.alloc(64 * 1024, 7), 0, 64 * 1024, 0);
    await fh.close();
  }
  for (let i = 0; i < n; i += 200) {
    await db.insertInto('vm').values(vms.slice(i, i + 200)).execute();
    await db.insertInto('vm_disk').values(disks.slice(i, i + 200)).execute();
  }
  return names;
}

/** Sends every create at once (one connection per request, as 1,000 clients would) and waits for all tasks. */
async function burst(rt: Runtime, targets: Array<{ url: string; vm: string }>, name: string): Promise<{ seconds: number; submitSeconds: number; latencies: number[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const sentAt = new Map<string, number>();
  const t0 = performance.now();
  const answers = await Promise.all(
    targets.map(
      (t) =>
        new Promise<number>((resolve, reject) => {
          const body = '{}';
          const sent = Date.now();
          const req = http.request(`${t.url}/api/vm/${t.vm}/snapshot/${name}/`, {
            method: 'POST',
            agent,
            headers: { 'ES-API-KEY': KEY, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
          });
          req.on('response', (res) => {
            const id = res.headers['es_task_id'];
            if (typeof id === 'string' && id) sentAt.set(id, sent);
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
          req.end(body);
        }),
    ),
  );
  const submitted = performance.now();
  const refused = answers.filter((s) => s !== 201).length;
  if (refused > 0) throw new Error(`${name}: ${refused} creates were not accepted`);
  for (;;) {
    const open = await rt.ctx.db.selectFrom('task').select((eb) => eb.fn.countAll<number>().as('n')).where('state', 'in', ['PENDING', 'STARTED']).executeTakeFirstOrThrow();
    if (Number(open.n) === 0) break;
    await sleep(20);
  }
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  const latencies: number[] = [];
  const ids = [...sentAt.keys()];
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await rt.ctx.db.selectFrom('task').select(['id', 'finished']).where('id', 'in', ids.slice(i, i + 500)).execute();
    for (const r of rows) if (r.finished) latencies.push(Date.parse(r.finished) - sentAt.get(r.id)!);
  }
  latencies.sort((a, b) => a - b);
  return { seconds, submitSeconds: (submitted - t0) / 1000, latencies };
}

/** The burst, then SEQUENTIAL creates one after another (each waited for) on the first targets. */
async function run(mode: string, rt: Runtime, targets: Array<{ url: string; vm: string }>): Promise<Result> {
  const l = load();
  const b = await burst(rt, targets, 'bench');
  const sequential: number[] = [];
  for (const t of targets.slice(0, SEQUENTIAL)) sequential.push(...(await burst(rt, [t], 'seq')).latencies);
  sequential.sort((x, y) => x - y);
  const failed = await rt.ctx.db.selectFrom('task').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '!=', 'SUCCESS').executeTakeFirstOrThrow();
  const made = await rt.ctx.db.selectFrom('snapshot').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 1).executeTakeFirstOrThrow();
  if (Number(made.n) !== targets.length + sequential.length) throw new Error(`${mode}: ${made.n} snapshots exist, ${targets.length + sequential.length} expected`);
  return {
    mode, seconds: b.seconds, submitSeconds: b.submitSeconds, perSecond: targets.length / b.seconds, failed: Number(failed.n),
    burst: b.latencies, sequential, load: `${l} → ${load()}`,
  };
}

async function embedded(): Promise<Result> {
  const dir = await mkdtemp(join(TMP, 'esnap-bench-embedded-'));
  const rt = await createRuntime({
    databaseUrl: `sqlite:${join(dir, 'esnap.db')}`, adminApiKey: KEY, node: 'node1', localAgent: true,
    storages: [{ name: 'default', driver: 'file', root: join(dir, 'storage') }], scheduler: false,
  });
  try {
    const url = (await rt.app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, '');
    const vms = await addVms(rt, 'node1', 'e', COUNT);
    return await run('embedded (SQLite, in-process queue, 1 agent)', rt, vms.map((vm) => ({ url, vm })));
  } finally {
    await rt.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function spawnAgent(url: string, node: string, root: string): ChildProcess {
  const p = spawn(process.execPath, [join(process.cwd(), 'dist/src/bin/esnap.js'), 'agent'], {
    env: { ...process.env, ESNAP_DATABASE_URL: url, ESNAP_NODE: node, ESNAP_STORAGES: JSON.stringify([{ name: 'default', driver: 'file', root }]) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return p;
}

async function cluster(agentCount: number): Promise<Result> {
  const dir = await mkdtemp(join(TMP, 'esnap-bench-cluster-'));
  const schema = `bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const opts = {
    databaseUrl: PG_URL, searchPath: schema, adminApiKey: KEY, node: 'unused', localAgent: false, storages: [], scheduler: false,
  };
  const a = await createRuntime(opts);
  const b = await createRuntime(opts);
  const agents: ChildProcess[] = [];
  try {
    const urlA = (await a.app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, '');
    const urlB = (await b.app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, '');
    const agentUrl = new URL(PG_URL);
    agentUrl.searchParams.set('options', `-c search_path=${schema}`);
    const nodes = Array.from({ length: agentCount }, (_, i) => `node${i + 1}`);
    for (const node of nodes) agents.push(spawnAgent(agentUrl.toString(), node, join(dir, node)));
    for (;;) {
      const n = await a.ctx.db.selectFrom('node').select('hostname').where('status', '=', 2).execute();
      if (n.length === agentCount) break;
      await sleep(50);
    }
    // Interleaved over the nodes, so the sequential creates (the first targets) visit every agent.
    const perNode: string[][] = [];
    for (const [k, node] of nodes.entries()) {
      const share = Math.floor(COUNT / agentCount) + (k < COUNT % agentCount ? 1 : 0);
      perNode.push(await addVms(a, node, `n${k}x`, share));
    }
    const vms: string[] = [];
    for (let i = 0; vms.length < COUNT; i++) for (const list of perNode) if (list[i]) vms.push(list[i]!);
    const targets = vms.map((vm, i) => ({ url: i % 2 === 0 ? urlA : urlB, vm }));
    return await run(`cluster (PostgreSQL + pg-boss, 2 servers, ${agentCount} agent process${agentCount > 1 ? 'es' : ''})`, a, targets);
  } finally {
    for (const p of agents) p.kill('SIGTERM');
    await Promise.all(agents.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
    await a.close();
    await b.close();
    await admin.query(`DROP SCHEMA IF EXISTS ${bossSchemaFor(schema)} CASCADE`);
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`${COUNT} snapshot creates submitted at once over the API, each on its own disk; time until all tasks ended`);
  console.log(`storages and SQLite on ${TMP}; latency = task finished − request sent; then ${SEQUENTIAL} creates one at a time`);
  const results = [await embedded()];
  for (const k of AGENTS) results.push(await cluster(k));
  const e = results[0]!;
  for (const r of results) {
    console.log(
      `${r.mode}: ${fmt(r.seconds, 2)} s until all done (submitting took ${fmt(r.submitSeconds, 2)} s), ${fmt(r.perSecond)} snapshots/s ` +
        `(${fmt(r.perSecond / e.perSecond, 2)}× embedded), ${r.failed} not successful; burst latency p50 ${fmt(percentile(r.burst, 50), 0)} ms, ` +
        `p99 ${fmt(percentile(r.burst, 99), 0)} ms; one at a time p50 ${fmt(percentile(r.sequential, 50), 0)} ms, p99 ${fmt(percentile(r.sequential, 99), 0)} ms; load ${r.load}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
