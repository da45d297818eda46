import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';
import { allViews } from '../../src/http/routes.js';

forEachDb('HTTP conventions', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind);
    await makeVm(s, 'web01');
  });
  afterAll(async () => s.cleanup());

  it('answers paths with and without the trailing slash alike', async () => {
    const a = await s.req('GET', '/api/vm/web01/snapshot/');
    const b = await s.req('GET', '/api/vm/web01/snapshot');
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(b.body.result).toEqual(a.body.result);
  });

  it('sets Danube headers on every answer', async () => {
    const r = await s.req('GET', '/api/vm/web01/snapshot/');
    expect(r.headers['es_version']).toBe('4.6');
    expect(r.headers['es_username']).toBe('admin');
    expect(r.headers['es_dc']).toBe('main');
    expect(r.headers['content-type']).toMatch(/^application\/json/);
  });

  it('checks who asks', async () => {
    expect(await s.req('GET', '/api/vm/web01/snapshot/', { key: null })).toMatchObject({
      status: 403,
      body: { detail: 'Authentication credentials were not provided.' },
    });
    expect(await s.req('GET', '/api/vm/web01/snapshot/', { key: 'wrong-key' })).toMatchObject({ status: 403, body: { detail: 'Invalid API key' } });
    const tok = await s.req('GET', '/api/vm/web01/snapshot/', { key: null, headers: { Authorization: 'Token abc def' } });
    expect(tok.body).toEqual({ detail: 'Invalid token header. Token string should not contain spaces.' });
    expect((await s.req('GET', '/api/vm/web01/snapshot/', { key: null, headers: { Authorization: 'Token nope' } })).body).toEqual({
      detail: 'Invalid token.',
    });
    expect((await s.req('GET', '/api/openapi.json', { key: null })).status).toBe(403);
  });

  it('refuses malformed JSON with 400 and other media types with 415', async () => {
    const r = await s.req('POST', '/api/vm/web01/snapshot/x/', { rawBody: '{"note": ', headers: { 'Content-Type': 'application/json' } });
    expect(r.status).toBe(400);
    expect(r.body.detail).toMatch(/^JSON parse error - /);
    const m = await s.req('POST', '/api/vm/web01/snapshot/x/', { rawBody: 'a=b', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    expect(m.status).toBe(415);
    expect(m.body).toEqual({ detail: 'Unsupported media type "application/x-www-form-urlencoded" in request.' });
    const rows = await s.runtime.ctx.db.selectFrom('snapshot').select('id').execute();
    expect(rows).toEqual([]);
  });

  it('accepts JSON with Danube es parameters in the media type and pretty-prints on request', async () => {
    const r = await s.req('GET', '/api/vm/web01/snapshot/', { headers: { Accept: 'application/json; indent=4' } });
    expect(r.text).toContain('\n    "status"');
    const c = await s.req('PUT', '/api/vm/web01/snapshot/', {
      rawBody: '{"disk_id": 1}',
      headers: { 'Content-Type': 'application/json; indent=4' },
    });
    expect(c.status).toBe(201);
  });

  it('answers a non-object body with Invalid data', async () => {
    const r = await s.req('POST', '/api/vm/web01/snapshot/x/', { body: [1, 2] });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ status: 'FAILURE', result: { non_field_errors: ['Invalid data'] } });
  });

  it('refuses huge bodies with 413', async () => {
    const r = await s.req('POST', '/api/vm/web01/snapshot/x/', { body: { note: 'x'.repeat(2 * 1024 * 1024) } });
    expect(r.status).toBe(413);
    expect(r.body.detail).toBeTypeOf('string');
  });

  it('answers unknown methods with 405 and OPTIONS with the description', async () => {
    const r = await s.req('PATCH', '/api/vm/web01/snapshot/');
    expect(r.status).toBe(405);
    expect(r.body).toEqual({ detail: 'Method "PATCH" not allowed.' });
    expect(r.headers['allow']).toBe('GET, PUT, DELETE, OPTIONS');
    const o = await s.req('OPTIONS', '/api/vm/web01/snapshot/');
    expect(o.status).toBe(200);
    expect(Object.keys(o.body)).toEqual(['name', 'description', 'renders', 'parses']);
  });

  it('answers unknown paths with 404 Not found', async () => {
    expect(await s.req('GET', '/api/nothing/here/')).toMatchObject({ status: 404, body: { detail: 'Not found' } });
  });

  it('serves the DC-bound views under /api/dc/<dc>/ and refuses unknown DCs', async () => {
    expect((await s.req('GET', '/api/dc/main/vm/web01/snapshot/')).status).toBe(200);
    expect(await s.req('GET', '/api/dc/nope/vm/web01/snapshot/')).toMatchObject({ status: 404, body: { detail: 'Datacenter not found' } });
    expect((await s.req('GET', '/api/vm/web01/snapshot/', { query: { dc: 'nope' } })).body).toEqual({ detail: 'Datacenter not found' });
  });

  it('describes every endpoint in /api/openapi.json', async () => {
    const r = await s.req('GET', '/api/openapi.json');
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe('3.1.0');
    for (const view of allViews()) {
      const path = `/api${view.path.replace(/:([A-Za-z_]+)/g, '{$1}')}/`;
      expect(r.body.paths[path], path).toBeDefined();
      for (const m of Object.keys(view.methods)) expect(r.body.paths[path][m.toLowerCase()], `${m} ${path}`).toBeDefined();
    }
  });
});

forEachDb('NUL characters', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind);
    await makeVm(s, 'web01');
  });
  afterAll(async () => s.cleanup());

  it('refuses NUL in parameters, bodies and paths with 400 instead of failing in the database', async () => {
    for (const r of [
      await s.req('GET', '/api/vm/web01/snapshot/', { query: { define: 'a\u0000b' } }),
      await s.req('POST', '/api/vm/web01/snapshot/x/', { body: { dc: '\u0000' } }),
      await s.req('POST', '/api/vm/web01/snapshot/x/', { body: { snapnames: [{ a: 'b\u0000' }] } }),
      await s.req('GET', '/api/vm/web%00/define/'),
    ]) {
      expect(r.status).toBe(400);
      expect(r.body).toEqual({ detail: 'Invalid data: NUL characters are not allowed.' });
    }
  });
});
