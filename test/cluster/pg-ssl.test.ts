/**
 * PostgreSQL over TLS: a private PostgreSQL (initdb in a temp folder, its own port) with ssl=on and a
 * pg_hba.conf that refuses unencrypted TCP, and a server certificate for 127.0.0.1 signed by a test
 * CA made with openssl. A server (createRuntime) and a real `esnap agent` given
 * `?sslmode=verify-full&sslrootcert=<ca.pem>` in their URL (next to `options=-c search_path=…`) run
 * a task end to end; with another CA, or a missing CA file, they fail with the reason.
 *
 * Needs the PostgreSQL server binaries (/usr/lib/postgresql/<v>/bin), openssl and root (to run
 * PostgreSQL as the postgres user); skipped loudly otherwise, failed in CI.
 */
import { platformUnavailable } from '../platform/require.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createRuntime } from '../../src/runtime.js';
import { ADMIN_KEY } from '../helpers/server.js';
import { runEsnap } from '../helpers/esnap-process.js';
import { PrivatePostgres, privatePgUnavailable } from '../helpers/private-pg.js';
import { makeTestCa, type TestCa } from '../helpers/test-ca.js';
import { makeNodeVm, newClusterDb, spawnAgent, startClusterServer, waitNodeOnline, type ChildAgent, type ClusterDb, type ClusterServer } from './cluster.helpers.js';

describe('cluster: PostgreSQL over TLS (sslmode in ESNAP_DATABASE_URL)', () => {
  const unavailable = privatePgUnavailable();
  if (unavailable) {
    platformUnavailable('cluster: PostgreSQL over TLS', unavailable);
    return;
  }
  let tmp: string;
  let ca: TestCa;
  let pgs: PrivatePostgres;
  let db: ClusterDb;
  let server: ClusterServer | undefined;
  let agent: ChildAgent | undefined;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'esnap-pgssl-ca-'));
    ca = makeTestCa(tmp);
    pgs = await PrivatePostgres.create({ tls: { certFile: ca.certFile, keyFile: ca.keyFile } });
    db = await newClusterDb(pgs.url(`sslmode=verify-full&sslrootcert=${encodeURIComponent(ca.caFile)}`));
  }, 60_000);
  afterAll(async () => {
    await agent?.kill('SIGKILL');
    await server?.close().catch(() => undefined);
    await db?.drop().catch(() => undefined);
    await pgs?.destroy();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('the private server refuses unencrypted connections (so what works below went through TLS)', async () => {
    const c = new pg.Client({ connectionString: pgs.url('sslmode=disable') });
    await expect(c.connect()).rejects.toThrow(/no encryption/);
    await c.end().catch(() => undefined);
  });

  it('a server and a real esnap agent run a task with sslmode=verify-full&sslrootcert=<ca>', async () => {
    // The server's URL carries the sslmode query; the agent's adds options=-c search_path=<schema>.
    expect(db.agentUrl()).toContain('sslmode=verify-full');
    server = await startClusterServer(db, { nodeSilenceS: 30 });
    agent = await spawnAgent(db, { node: 'node1', root: join(tmp, 'node1') }, { env: { ESNAP_NODE_SILENCE_S: '30' } });
    const started = agent;
    await waitNodeOnline(server, 'node1').catch((err: Error) => {
      throw new Error(`${err.message}; agent output:\n${started.output()}`);
    });
    await makeNodeVm(server, 'node1', 'web01', { disks: [1] });
    const r = await server.stream('POST', '/api/vm/web01/snapshot/s1/', { body: {} });
    expect(r.finalStatus).toBe(200);
    expect((r.final as { status: string }).status).toBe('SUCCESS');
    const [row] = await db.query<{ tls: string; plain: string; version: string | null }>(
      `SELECT count(*) FILTER (WHERE s.ssl) AS tls, count(*) FILTER (WHERE NOT s.ssl) AS plain, max(s.version) AS version
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'client backend'`,
    );
    // All encrypted: at least this query's own connection and the LISTEN connections of the server
    // and the agent (pool connections come and go with their idle timeout).
    expect(Number(row!.tls)).toBeGreaterThanOrEqual(3);
    expect(Number(row!.plain)).toBe(0);
    expect(row!.version).toMatch(/^TLSv1\.[23]$/);
    expect(agent.proc.exitCode).toBeNull();
  }, 60_000);

  it('a server given another CA, or sslmode=require without the CA, fails with the certificate error', async () => {
    const start = (url: string) =>
      createRuntime({ databaseUrl: url, searchPath: db.schema, adminApiKey: ADMIN_KEY, node: 'unused', storages: [], localAgent: false, scheduler: false });
    await expect(start(pgs.url(`sslmode=verify-full&sslrootcert=${encodeURIComponent(ca.otherCaFile)}`))).rejects.toThrow(
      'unable to verify the first certificate',
    );
    // node-postgres 8 verifies with sslmode=require too (libpq would not): the CA is needed.
    await expect(start(pgs.url('sslmode=require'))).rejects.toThrow('unable to verify the first certificate');
  });

  it('esnap serve and esnap agent given another CA, or a missing CA file, exit 1 with the reason', async () => {
    const base = { ESNAP_DATA_DIR: join(tmp, 'data'), ESNAP_NODE: 'node2', ESNAP_LISTEN: '127.0.0.1:0', ESNAP_ADMIN_API_KEY: ADMIN_KEY };
    const u = new URL(db.agentUrl());
    u.searchParams.set('sslrootcert', ca.otherCaFile);
    const wrong = u.toString();
    for (const cmd of ['serve', 'agent']) {
      const r = await runEsnap([cmd], { ...base, ESNAP_DATABASE_URL: wrong }, 20_000);
      expect(r.code, r.output).toBe(1);
      expect(r.output).toContain(`esnap: cannot connect to PostgreSQL at 127.0.0.1:${pgs.port}: its TLS certificate was refused (unable to verify the first certificate)`);
      expect(r.output).toContain('check sslrootcert');
      // The message, not a stack trace.
      expect(r.output).not.toContain('    at ');
    }
    const missing = pgs.url(`sslmode=verify-full&sslrootcert=${encodeURIComponent(join(tmp, 'nope.pem'))}`);
    const r = await runEsnap(['agent'], { ...base, ESNAP_DATABASE_URL: missing }, 20_000);
    expect(r.code, r.output).toBe(1);
    expect(r.output).toContain(`esnap: configuration error: ESNAP_DATABASE_URL sslrootcert: cannot read ${join(tmp, 'nope.pem')}: ENOENT`);
  }, 60_000);
});
