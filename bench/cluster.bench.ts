/**
 * Issue 6 benchmark: 1,000 snapshot creates submitted at once over the API, time until every task
 * has ended and tasks per second, in cluster mode (two servers, two `esnap agent` processes for
 * node1 and node2, PostgreSQL and pg-boss) beside embedded mode (one server, SQLite, in-process
 * queue and agent) on the same machine in the same run. Each create is on a disk of its own (one
 * disk lock per task), 1 MiB sparse images on `file` storages.
 *
 *   npm run build && node dist/bench/cluster.bench.js [count]
 *
 * PostgreSQL: ESNAP_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { bossSchemaFor } from '../src/queue/pgboss.queue.js';
import { fmt } from './lib.js';

const KEY = 'bench-admin-key-0123456789abcdef';
const PG_URL = process.env['ESNAP_TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const COUNT = Number(process.argv[2] ?? 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Result {
  mode: string;
  seconds: number;
  submitSeconds: number;
  perSecond: number;
  failed: number;
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
async function run(mode: string, rt: Runtime, targets: Array<{ url: string; vm: string }>): Promise<Result> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const t0 = performance.now();
  const answers = await Promise.all(
    targets.map(
      (t) =>
        new Promise<number>((resolve, reject) => {
          const body = '{}';
          const req = http.request(`${t.url}/api/vm/${t.vm}/snapshot/bench/`, {
            method: 'POST',
            agent,
            headers: { 'ES-API-KEY': KEY, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
          });
          req.on('response', (res) => {
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
  if (refused > 0) throw new Error(`${mode}: ${refused} creates were not accepted`);
  for (;;) {
    const open = await rt.ctx.db.selectFrom('task').select((eb) => eb.fn.countAll<number>().as('n')).where('state', 'in', ['PENDING', 'STARTED']).executeTakeFirstOrThrow();
    if (Number(open.n) === 0) break;
    await sleep(20);
  }
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  const failed = await rt.ctx.db.selectFrom('task').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '!=', 'SUCCESS').executeTakeFirstOrThrow();
  return { mode, seconds, submitSeconds: (submitted - t0) / 1000, perSecond: targets.length / seconds, failed: Number(failed.n) };
}

async function embedded(): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-embedded-'));
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

async function cluster(): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-cluster-'));
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
    for (const node of ['node1', 'node2']) agents.push(spawnAgent(agentUrl.toString(), node, join(dir, node)));
    for (;;) {
      const n = await a.ctx.db.selectFrom('node').select('hostname').where('status', '=', 2).execute();
      if (n.length === 2) break;
      await sleep(50);
    }
    const half = Math.floor(COUNT / 2);
    const vms1 = await addVms(a, 'node1', 'a', half);
    const vms2 = await addVms(a, 'node2', 'b', COUNT - half);
    const targets = [...vms1, ...vms2].map((vm, i) => ({ url: i % 2 === 0 ? urlA : urlB, vm }));
    return await run('cluster (PostgreSQL + pg-boss, 2 servers, 2 agent processes)', a, targets);
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
  const results = [await embedded(), await cluster()];
  for (const r of results) {
    console.log(
      `${r.mode}: ${fmt(r.seconds, 2)} s until all done (submitting took ${fmt(r.submitSeconds, 2)} s), ${fmt(r.perSecond)} tasks/s, ${r.failed} not successful`,
    );
  }
  const [e, c] = results as [Result, Result];
  console.log(`cluster / embedded throughput: ${fmt(c.perSecond / e.perSecond, 2)}×`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
