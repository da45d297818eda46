/**
 * The UI's static route (src/http/ui.ts): content types, caching, the index.html fallback for the
 * app's routes only, pre-compressed files, no way out of the build folder, /api never shadowed,
 * and no credentials needed. On a bare Fastify app with a build folder made here, then on a real
 * server with the real build.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uiRoute } from '../../src/http/ui.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { ensureUiBuilt } from './browser.js';

const INDEX = '<!doctype html><title>app</title>';

describe('UI static route', () => {
  let dir: string;
  let app: FastifyInstance;
  let emptyApp: FastifyInstance;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-ui-'));
    const root = join(dir, 'ui');
    await mkdir(join(root, 'assets'), { recursive: true });
    await writeFile(join(root, 'index.html'), INDEX);
    await writeFile(join(root, 'assets', 'app-1234.js'), 'console.log(1)');
    await writeFile(join(root, 'assets', 'app-1234.js.gz'), gzipSync('console.log(1)'));
    await writeFile(join(root, 'assets', 'app-1234.css'), 'body{}');
    await writeFile(join(root, 'favicon.svg'), '<svg/>');
    await writeFile(join(root, '.build-stamp'), 'x');
    await writeFile(join(dir, 'secret.txt'), 'secret');
    await symlink(join(dir, 'secret.txt'), join(root, 'assets', 'link.txt'));
    const build = async (r: string): Promise<FastifyInstance> => {
      const a = Fastify();
      a.setNotFoundHandler(async (_req, reply) => reply.code(404).send({ detail: 'Not found' }));
      a.get('/api/thing', async () => ({ ok: true }));
      uiRoute(a, { root: r });
      await a.ready();
      return a;
    };
    app = await build(root);
    emptyApp = await build(join(dir, 'missing'));
  });
  afterAll(async () => {
    await app?.close();
    await emptyApp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: path, headers });

  it('serves files with their content types and caching', async () => {
    const index = await get('/');
    expect(index.statusCode).toBe(200);
    expect(index.body).toBe(INDEX);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['cache-control']).toBe('no-cache');
    expect(index.headers['content-security-policy']).toContain("script-src 'self'");
    expect(index.headers['x-content-type-options']).toBe('nosniff');
    const js = await get('/assets/app-1234.js');
    expect([js.statusCode, js.headers['content-type'], js.headers['cache-control'], js.body]).toEqual([
      200,
      'text/javascript; charset=utf-8',
      'public, max-age=31536000, immutable',
      'console.log(1)',
    ]);
    expect((await get('/assets/app-1234.css')).headers['content-type']).toBe('text/css; charset=utf-8');
    const icon = await get('/favicon.svg');
    expect([icon.statusCode, icon.headers['content-type'], icon.headers['cache-control']]).toEqual([200, 'image/svg+xml', 'public, max-age=3600']);
  });

  it('sends the pre-compressed file to clients that accept gzip, and answers 304 to a matching ETag', async () => {
    const gz = await get('/assets/app-1234.js', { 'accept-encoding': 'gzip, br' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers['vary']).toBe('Accept-Encoding');
    expect(gz.rawPayload.equals(gzipSync('console.log(1)'))).toBe(true);
    const index = await get('/');
    const again = await get('/', { 'if-none-match': String(index.headers['etag']) });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
  });

  it('answers index.html for the app’s routes but 404 for missing files', async () => {
    for (const path of ['/vm/web01', '/vm/web01.example.com', '/tasks', '/vm/web01/']) {
      const r = await get(path);
      expect([path, r.statusCode, r.body]).toEqual([path, 200, INDEX]);
    }
    for (const path of ['/assets/gone.js', '/gone.js', '/favicon.ico']) {
      const r = await get(path);
      expect([path, r.statusCode, r.headers['content-type']]).toEqual([path, 404, 'text/plain; charset=utf-8']);
    }
  });

  it('never serves anything outside the build folder, nor dot-files', async () => {
    for (const path of [
      '/../secret.txt',
      '/%2e%2e/secret.txt',
      '/assets/%2e%2e/%2e%2e/secret.txt',
      '/assets/..%2f..%2fsecret.txt',
      '/assets/link.txt',
      '/.build-stamp',
      '/assets/%5c..%5csecret.txt',
      '/%00',
      '/%E0%A4%A',
    ]) {
      const r = await get(path);
      expect(r.body, path).not.toContain('secret');
      expect(r.body, path).not.toBe('x');
      // A malformed escape is refused by the router itself (400).
      expect(path === '/%E0%A4%A' ? 400 : 404, path).toBe(r.statusCode);
    }
  });

  it('leaves /api to the API: its routes and its 404', async () => {
    expect((await get('/api/thing')).json()).toEqual({ ok: true });
    const r = await get('/api/nothing/here/');
    expect([r.statusCode, r.json()]).toEqual([404, { detail: 'Not found' }]);
    expect((await get('/api')).statusCode).toBe(404);
    expect((await app.inject({ method: 'POST', url: '/' })).statusCode).toBe(404);
  });

  it('says that the UI is not built when its folder is missing', async () => {
    const r = await emptyApp.inject({ method: 'GET', url: '/' });
    expect(r.statusCode).toBe(503);
    expect(r.body).toContain('npm run build');
  });
});

describe('UI static route on a real server', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    ensureUiBuilt();
    s = await withServer('sqlite');
  });
  afterAll(async () => s?.cleanup());

  it('serves the built app without credentials, and the API still asks for them', async () => {
    const index = await fetch(`${s.url}/`);
    expect(index.status).toBe(200);
    const html = await index.text();
    const script = /<script type="module" crossorigin src="(\/assets\/[^"]+\.js)">/.exec(html);
    expect(script).not.toBeNull();
    const js = await fetch(`${s.url}${script![1]}`);
    expect([js.status, js.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8']);
    expect((await fetch(`${s.url}/favicon.svg`)).headers.get('content-type')).toBe('image/svg+xml');
    expect((await fetch(`${s.url}/vm/web01`)).status).toBe(200);
    const api = await s.req('GET', '/api/vm/', { key: null });
    expect([api.status, api.body]).toEqual([403, { detail: 'Authentication credentials were not provided.' }]);
    expect((await s.req('GET', '/api/nothing/')).body).toEqual({ detail: 'Not found' });
    expect((await s.req('GET', '/api/openapi.json')).status).toBe(200);
  });
});
