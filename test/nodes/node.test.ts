import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser } from '../helpers/fixtures.js';

const NODE_KEYS = ['hostname', 'uuid', 'status', 'status_display', 'last_heartbeat'];
const STORAGE_KEYS = ['name', 'driver', 'node', 'size', 'size_free'];
const DANUBE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$/;

forEachDb('nodes', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let user: { id: number; key: string };
  beforeAll(async () => {
    s = await withServer(kind);
    user = await makeUser(s, 'plain');
  });
  afterAll(() => s.cleanup());

  it('lists nodes registered by the agent, to any user', async () => {
    const r = await s.req('GET', '/api/node/', { key: user.key });
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('SUCCESS');
    expect(r.body.result).toEqual([s.node]);
    const full = await s.req('GET', '/api/node', { key: user.key, query: { full: 'true' } });
    expect(full.body.result).toHaveLength(1);
    const n = full.body.result[0];
    expect(Object.keys(n)).toEqual(NODE_KEYS);
    expect(n).toMatchObject({ hostname: s.node, status: 2, status_display: 'online' });
    expect(n.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(n.last_heartbeat).toMatch(DANUBE_TIME);
    const one = await s.req('GET', `/api/node/${s.node}`);
    expect(one.body.result).toEqual(n);
  });

  it('shows other states by their Danube names', async () => {
    const db = s.runtime.ctx.db;
    const now = new Date().toISOString();
    await db.insertInto('node').values({ hostname: 'a-down.test', uuid: 'u-1', status: 1, last_heartbeat: null, created: now }).execute();
    await db.insertInto('node').values({ hostname: 'b-lost.test', uuid: 'u-2', status: 3, last_heartbeat: now, created: now }).execute();
    const r = await s.req('GET', '/api/node', { query: { full: '1' } });
    expect(r.body.result.map((x: { hostname: string; status_display: string }) => [x.hostname, x.status_display])).toEqual([
      ['a-down.test', 'maintenance'],
      ['b-lost.test', 'unreachable'],
      [s.node, 'online'],
    ]);
    expect(r.body.result[0].last_heartbeat).toBeNull();
  });

  it('lists and shows storages in bytes', async () => {
    const r = await s.req('GET', `/api/node/${s.node}/storage`, { key: user.key });
    expect(r.status).toBe(200);
    expect(r.body.result).toEqual(['default']);
    const full = await s.req('GET', `/api/node/${s.node}/storage/`, { query: { full: 'true' } });
    const st = full.body.result[0];
    expect(Object.keys(st)).toEqual(STORAGE_KEYS);
    expect(st).toMatchObject({ name: 'default', driver: 'file', node: s.node });
    expect(Number.isInteger(st.size) && st.size > 0).toBe(true);
    expect(Number.isInteger(st.size_free) && st.size_free <= st.size).toBe(true);
    const one = await s.req('GET', `/api/node/${s.node}/storage/default/`, { key: user.key });
    expect(one.body.result).toEqual(st);
  });

  it("answers Danube's 404s, 405 and 403", async () => {
    for (const [path, detail] of [
      ['/api/node/nope.test', 'Node not found'],
      ['/api/node/nope.test/storage', 'Node not found'],
      ['/api/node/nope.test/storage/default', 'Node not found'],
      [`/api/node/${s.node}/storage/nope`, 'Storage not found'],
    ] as const) {
      const r = await s.req('GET', path);
      expect(r.status, path).toBe(404);
      expect(r.body).toEqual({ detail });
    }
    const post = await s.req('POST', '/api/node/x.test', { body: {} });
    expect(post.status).toBe(405);
    expect(post.body).toEqual({ detail: 'Method "POST" not allowed.' });
    expect((await s.req('DELETE', `/api/node/${s.node}/storage/default`)).status).toBe(405);
    expect((await s.req('GET', '/api/node', { key: null })).status).toBe(403);
    // Nodes are DC-unbound: no /api/dc/<dc>/ form.
    expect((await s.req('GET', '/api/dc/main/node')).status).toBe(404);
  });
});
