/**
 * Test servers: a real esnap runtime on a real database (a SQLite file, or a PostgreSQL schema of
 * its own on the machine's server), listening on 127.0.0.1 on a free port, with a `file` storage
 * in a temp folder. Every API test runs once per database (`forEachDb`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe } from 'vitest';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import type { Clock, Logger } from '../../src/app-context.js';
import type { StorageConfig } from '../../src/storage/drivers.js';
import type { CommandRunner } from '../../src/storage/runner.js';
import type { HypervisorConfig } from '../../src/config.js';

export type TestDb = 'sqlite' | 'postgres';

export const PG_URL = process.env['ESNAP_TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

/** Databases to run on: `ESNAP_TEST_DB=sqlite|postgres`, both by default. */
export function testDatabases(): TestDb[] {
  const v = process.env['ESNAP_TEST_DB'];
  if (v === 'sqlite' || v === 'postgres') return [v];
  return ['sqlite', 'postgres'];
}

/** Runs the same suite once per database. */
export function forEachDb(name: string, fn: (db: TestDb) => void): void {
  for (const db of testDatabases()) describe(`${name} [${db}]`, () => fn(db));
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: any;
}

export interface RequestOptions {
  body?: unknown;
  rawBody?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** API key to send; defaults to the admin's; null sends none. */
  key?: string | null;
}

export interface TestServer {
  readonly url: string;
  readonly runtime: Runtime;
  readonly storageRoot: string;
  readonly node: string;
  req(method: string, path: string, opts?: RequestOptions): Promise<Reply>;
  /** Request with `ES-STREAM: es`, returning the final status line and JSON. */
  stream(method: string, path: string, opts?: RequestOptions): Promise<Reply & { finalStatus: number; final: unknown }>;
  close(): Promise<void>;
}

/**
 * `req` and `stream` against an esnap listening at `url` (the admin key unless told otherwise).
 *
 * Example: `const r = await httpClient('http://127.0.0.1:8080').req('GET', '/readyz', { key: null });`
 */
export function httpClient(url: string): Pick<TestServer, 'req' | 'stream'> {
  const req = async (method: string, path: string, o: RequestOptions = {}): Promise<Reply> => {
    const q = o.query ? `?${new URLSearchParams(o.query).toString()}` : '';
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    const key = o.key === undefined ? ADMIN_KEY : o.key;
    if (key !== null) headers['ES-API-KEY'] = key;
    let body: string | undefined;
    if (o.rawBody !== undefined) body = o.rawBody;
    else if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['Content-Type'] ??= 'application/json';
    }
    const res = await fetch(`${url}${path}${q}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: Object.fromEntries(res.headers.entries()), text, body: parsed };
  };

  const stream = async (method: string, path: string, o: RequestOptions = {}) => {
    const r = await req(method, path, { ...o, headers: { ...(o.headers ?? {}), 'ES-STREAM': 'es' } });
    const trimmed = r.text.replace(/^ +/, '');
    const nl = trimmed.indexOf('\n');
    const isStream = r.headers['es_stream'] === 'True';
    const finalStatus = isStream && nl > 0 ? Number(trimmed.slice(0, nl)) : r.status;
    const final = isStream && nl > 0 ? (JSON.parse(trimmed.slice(nl + 1)) as unknown) : r.body;
    return { ...r, finalStatus, final };
  };
  return { req, stream };
}

export interface ServerOptions {
  storages?: (root: string) => StorageConfig[];
  node?: string;
  clock?: Clock;
  streamTimeoutS?: number;
  /** Run the local agent (default true). */
  localAgent?: boolean;
  /**
   * Run the scheduler loop (default false here: test servers use the wall clock, and a loop would
   * fire definitions that tests create at whatever minute the suite happens to run).
   */
  scheduler?: boolean;
  scheduleRetryS?: number;
  /** Heartbeat silence of a node (its local agent beats every third of it). */
  nodeSilenceS?: number;
  alertWebhook?: string;
  metricsPublic?: boolean;
  publicUrl?: string;
  /** The command runner of the local agent's drivers (tests that slow a command down). */
  runner?: CommandRunner;
  log?: Logger;
  /** The local agent's hypervisor adapter (ESNAP_HYPERVISOR…). */
  hypervisor?: HypervisorConfig;
  /** Reuse a database from an earlier server (restart tests). */
  reuse?: { databaseUrl: string; searchPath?: string; storageRoot: string };
}

async function newDatabase(kind: TestDb, dir: string): Promise<{ databaseUrl: string; searchPath?: string; drop(): Promise<void> }> {
  if (kind === 'sqlite') return { databaseUrl: `sqlite:${join(dir, 'esnap.db')}`, drop: async () => undefined };
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.end();
  return {
    databaseUrl: PG_URL,
    searchPath: schema,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      // On PostgreSQL the server installs pg-boss beside it (see bossSchemaFor).
      await c.query(`DROP SCHEMA IF EXISTS ${schema}_pgboss CASCADE`);
      await c.end();
    },
  };
}

export async function startTestServer(kind: TestDb, opts: ServerOptions = {}): Promise<TestServer & { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string } }> {
  const dir = opts.reuse ? opts.reuse.storageRoot : await mkdtemp(join(tmpdir(), 'esnap-test-'));
  const database = opts.reuse ? { ...opts.reuse, drop: async () => undefined } : await newDatabase(kind, dir);
  const storageRoot = dir;
  const node = opts.node ?? 'node1.test';
  const storages = opts.storages ? opts.storages(storageRoot) : [{ name: 'default', driver: 'file', root: join(storageRoot, 'storage') }];
  const runtime = await createRuntime({
    databaseUrl: database.databaseUrl,
    ...(database.searchPath ? { searchPath: database.searchPath } : {}),
    adminApiKey: ADMIN_KEY,
    node,
    storages,
    localAgent: opts.localAgent ?? true,
    streamTimeoutS: opts.streamTimeoutS ?? 60,
    ...(opts.clock ? { clock: opts.clock } : {}),
    scheduler: opts.scheduler ?? false,
    ...(opts.scheduleRetryS !== undefined ? { scheduleRetryS: opts.scheduleRetryS } : {}),
    ...(opts.nodeSilenceS !== undefined ? { nodeSilenceS: opts.nodeSilenceS } : {}),
    ...(opts.alertWebhook !== undefined ? { alertWebhook: opts.alertWebhook } : {}),
    ...(opts.metricsPublic !== undefined ? { metricsPublic: opts.metricsPublic } : {}),
    ...(opts.log ? { log: opts.log } : {}),
    ...(opts.publicUrl !== undefined ? { publicUrl: opts.publicUrl } : {}),
    ...(opts.runner ? { runner: opts.runner } : {}),
    ...(opts.hypervisor ? { hypervisor: opts.hypervisor } : {}),
    // Backup keys live in the node's data folder, beside (never inside) its storages.
    backupKeysDir: join(dir, 'backup-keys'),
  });
  const address = await runtime.app.listen({ host: '127.0.0.1', port: 0 });
  const url = address.replace(/\/$/, '');

  const { req, stream } = httpClient(url);

  return {
    url,
    runtime,
    storageRoot,
    node,
    req,
    stream,
    dbInfo: { databaseUrl: database.databaseUrl, ...(database.searchPath ? { searchPath: database.searchPath } : {}), storageRoot },
    async close() {
      await runtime.close();
    },
    // Dropping the database and folder is separate, so restart tests can reuse them.
    ...{
      async destroy() {
        await database.drop();
        await rm(dir, { recursive: true, force: true });
      },
    },
  } as TestServer & { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string }; destroy(): Promise<void> };
}

/** Starts a server and returns it with a cleanup that closes it and drops its data. */
export async function withServer(kind: TestDb, opts: ServerOptions = {}): Promise<TestServer & { cleanup(): Promise<void> }> {
  const s = (await startTestServer(kind, opts)) as unknown as TestServer & { destroy(): Promise<void> };
  return Object.assign(s, {
    async cleanup() {
      await s.close();
      await s.destroy();
    },
  });
}
