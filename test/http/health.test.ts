/**
 * /healthz and /readyz of the API server: no credentials needed, HEAD and the slash variant
 * answered like GET, and /readyz names the failing part: the database (gone, or not answering in
 * time), the migrations (a newer esnap migrated the database), the local agent's node, or, in
 * cluster mode without a local agent, the lack of an online node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { knownMigrations } from '../../src/db/migrate.js';
import { registerNode } from '../../src/nodes/node.repository.js';
import { NODE_UNREACHABLE } from '../../src/nodes/node.heartbeat.js';
import { publicError, runChecks } from '../../src/health/health.checks.js';

type Server = TestServer & { cleanup(): Promise<void> };
const NEWEST = knownMigrations.at(-1)!;

describe('health check answers', () => {
  it('keeps credentials out of error texts', () => {
    const err = new Error('connect to postgres://esnap:s3cret@db.example:5432/esnap failed; password=hunter2 rejected');
    const text = publicError(err);
    expect(text).not.toContain('s3cret');
    expect(text).not.toContain('hunter2');
    expect(text).toContain('postgres://***@db.example:5432/esnap');
    expect(publicError(new Error('x'.repeat(1000))).length).toBeLessThanOrEqual(300);
  });

  it('does not run a check whose dependency failed, and lists failures in order', async () => {
    let ran = false;
    const r = await runChecks([
      { name: 'database', probe: () => Promise.reject(new Error('down')) },
      { name: 'other', probe: async () => ({ fine: true }) },
      { name: 'migrations', needs: 'database', probe: async () => { ran = true; } },
    ]);
    expect(ran).toBe(false);
    expect(r.status).toBe(503);
    expect(r.body).toEqual({
      status: 'not ready',
      failing: ['database', 'migrations'],
      checks: {
        database: { ok: false, error: 'down' },
        other: { ok: true, fine: true },
        migrations: { ok: false, error: 'not checked: database failed' },
      },
    });
  });
});

forEachDb('health endpoints', (kind) => {
  let s: Server;
  beforeAll(async () => {
    s = await withServer(kind);
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  it('/healthz answers 200 without credentials, with HEAD and with a trailing slash', async () => {
    for (const path of ['/healthz', '/healthz/']) {
      const r = await s.req('GET', path, { key: null });
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toMatch(/^application\/json/);
      expect(r.body).toEqual({ status: 'ok' });
    }
    const head = await s.req('HEAD', '/healthz', { key: null });
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
    // A wrong key changes nothing: the probe never looks at credentials.
    expect((await s.req('GET', '/healthz', { key: 'wrong-key-wrong-key' })).status).toBe(200);
  });

  it('/readyz answers 200 with every check when the server can work', async () => {
    for (const path of ['/readyz', '/readyz/']) {
      const r = await s.req('GET', path, { key: null });
      expect(r.status).toBe(200);
      expect(r.body).toEqual({
        status: 'ready',
        checks: {
          database: { ok: true, kind },
          migrations: { ok: true, latest: NEWEST },
          agent: { ok: true, node: s.node },
        },
      });
    }
    const head = await s.req('HEAD', '/readyz', { key: null });
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
    // Other methods are not routes here.
    expect((await s.req('POST', '/readyz', { key: null })).status).toBe(404);
  });

  it('names the migrations when a newer esnap migrated the database', async () => {
    const db = s.runtime.ctx.db;
    await sql`INSERT INTO esnap_migration (name, applied) VALUES ('9999_future', '2030-01-01T00:00:00.000Z')`.execute(db);
    try {
      const r = await s.req('GET', '/readyz', { key: null });
      expect(r.status).toBe(503);
      expect(r.body.status).toBe('not ready');
      expect(r.body.failing).toEqual(['migrations']);
      expect(r.body.checks.migrations.ok).toBe(false);
      expect(r.body.checks.migrations.error).toContain('9999_future');
      expect(r.body.checks.migrations.error).toContain(NEWEST);
      expect(r.body.checks.database).toEqual({ ok: true, kind });
      // HEAD says the same without a body.
      expect((await s.req('HEAD', '/readyz', { key: null })).status).toBe(503);
    } finally {
      await sql`DELETE FROM esnap_migration WHERE name = '9999_future'`.execute(db);
    }
    expect((await s.req('GET', '/readyz', { key: null })).status).toBe(200);
  });

  it("names the agent when the local agent's node is not registered", async () => {
    const db = s.runtime.ctx.db;
    await db.updateTable('node').set({ hostname: 'renamed.test' }).where('hostname', '=', s.node).execute();
    try {
      const r = await s.req('GET', '/readyz', { key: null });
      expect(r.status).toBe(503);
      expect(r.body.failing).toEqual(['agent']);
      expect(r.body.checks.agent.error).toContain(s.node);
    } finally {
      await db.updateTable('node').set({ hostname: s.node }).where('hostname', '=', 'renamed.test').execute();
    }
    expect((await s.req('GET', '/readyz', { key: null })).status).toBe(200);
  });

  it('without a local agent, names the nodes until one is online', async () => {
    const c = await withServer(kind, { localAgent: false });
    try {
      const none = await c.req('GET', '/readyz', { key: null });
      expect(none.status).toBe(503);
      expect(none.body.failing).toEqual(['nodes']);
      expect(none.body.checks.nodes.error).toMatch(/no node is online/);
      expect(none.body.checks.agent).toBeUndefined();
      expect((await c.req('GET', '/healthz', { key: null })).status).toBe(200);

      const at = new Date().toISOString();
      await registerNode(c.runtime.ctx.db, 'remote1.test', [], at);
      const one = await c.req('GET', '/readyz', { key: null });
      expect(one.status).toBe(200);
      expect(one.body.checks.nodes).toEqual({ ok: true, online: 1, registered: 1 });

      await c.runtime.ctx.db.updateTable('node').set({ status: NODE_UNREACHABLE }).execute();
      const gone = await c.req('GET', '/readyz', { key: null });
      expect(gone.status).toBe(503);
      expect(gone.body.failing).toEqual(['nodes']);
      expect(gone.body.checks.nodes.error).toContain('1 registered');
    } finally {
      await c.cleanup();
    }
  });

  it('names the database when it is gone; /healthz still answers', async () => {
    const c = await withServer(kind);
    try {
      await c.runtime.ctx.db.destroy();
      const r = await c.req('GET', '/readyz', { key: null });
      expect(r.status).toBe(503);
      expect(r.body.status).toBe('not ready');
      expect(r.body.failing[0]).toBe('database');
      expect(r.body.failing).toEqual(['database', 'migrations', 'agent']);
      expect(r.body.checks.database.ok).toBe(false);
      expect(typeof r.body.checks.database.error).toBe('string');
      expect(r.body.checks.database.error.length).toBeGreaterThan(0);
      expect(r.body.checks.migrations).toEqual({ ok: false, error: 'not checked: database failed' });
      expect((await c.req('GET', '/healthz', { key: null })).body).toEqual({ status: 'ok' });
    } finally {
      await c.cleanup();
    }
  });

  if (kind === 'postgres') {
    it('names the database when it does not answer in time (every pooled connection busy)', async () => {
      const c = await withServer(kind);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const holders: Array<Promise<void>> = [];
      try {
        // The pool holds 10 connections (db/dialect.ts); keep every one inside a transaction.
        let started = 0;
        const allStarted = new Promise<void>((resolve) => {
          for (let i = 0; i < 10; i++) {
            holders.push(
              c.runtime.ctx.db.transaction().execute(async (trx) => {
                await sql`SELECT 1`.execute(trx);
                if (++started === 10) resolve();
                await gate;
              }),
            );
          }
        });
        await allStarted;
        const r = await c.req('GET', '/readyz', { key: null });
        expect(r.status).toBe(503);
        expect(r.body.failing[0]).toBe('database');
        expect(r.body.checks.database.error).toMatch(/no answer within \d+ ms/);
        release();
        await Promise.all(holders);
        expect((await c.req('GET', '/readyz', { key: null })).status).toBe(200);
      } finally {
        release();
        await Promise.allSettled(holders);
        await c.cleanup();
      }
    });
  }
});
