/**
 * es at the process edge, against small local servers of the test's own: the exact bytes es
 * sends, answers a real esnap does not give (500, redirects, plain text, gzip, broken or endless
 * streams, Danube's stream without a status line), connection errors, timeouts, Ctrl-C and TLS.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { requirePlatform } from '../platform/require.js';
import { assertBuilt, fakeServer, makeTmp, out, runEs, until, type EsOptions, type EsResult, type FakeServer } from './es-helpers.js';

const INTERRUPTED = 'ERROR: Request interrupted by user. Please check your current task list.';
const JSON_HEADERS = { 'Content-Type': 'application/json' };

let tmp: ReturnType<typeof makeTmp>;
const servers: FakeServer[] = [];
beforeAll(() => {
  assertBuilt();
  tmp = makeTmp();
});
afterAll(() => tmp.cleanup());
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(handler: Parameters<typeof fakeServer>[0]): Promise<FakeServer> {
  const s = await fakeServer(handler);
  servers.push(s);
  return s;
}

const es = (s: { url: string }, args: string[], env: Record<string, string> = {}, onSpawn?: EsOptions['onSpawn']): Promise<EsResult> =>
  runEs(args, { tmp: tmp.dir, env: { ES_API_URL: `${s.url}/api`, ...env }, ...(onSpawn ? { onSpawn } : {}) });

/** Header names in the order es sent them, without the ones Node adds (Host). */
const sentHeaderNames = (raw: string[]): string[] => raw.filter((_, i) => i % 2 === 0).filter((n) => n !== 'Host');

describe('what es sends', () => {
  const okServer = () => serve((_req, res) => res.writeHead(200, JSON_HEADERS).end('{"status": "SUCCESS", "result": null}'));

  it('GET: parameters in the query string, no body, the headers of Danube es in its order', async () => {
    const s = await okServer();
    writeFileSync(join(tmp.dir, 'esdc.session'), 'tok-1');
    try {
      const r = await es(s, ['get', '/vm/web01/snapshot', '-full', '-a', '1', '-b', 'false', '-n', 'null', '-l', 'json::["x",2]', '-s', 'a b&c'], { ES_API_KEY: 'key-1' });
      expect(r.code).toBe(0);
      const req = s.requests[0]!;
      expect(req.method).toBe('GET');
      expect(req.url).toBe('/api/vm/web01/snapshot/?full=True&a=1&b=False&l=x&l=2&s=a+b%26c');
      expect(req.body).toBe('');
      expect(sentHeaderNames(req.rawHeaders)).toEqual(['User-Agent', 'Accept-Encoding', 'Accept', 'Connection', 'Content-Type', 'ES-STREAM', 'Authorization', 'ES-API-KEY']);
      expect(req.headers).toMatchObject({
        'user-agent': 'es/1.3.3',
        accept: 'application/json; indent=4',
        'content-type': 'application/json; indent=4',
        'es-stream': 'es',
        authorization: 'Token tok-1',
        'es-api-key': 'key-1',
      });
      expect(out(r).url).toBe(`${s.url}/api/vm/web01/snapshot/?full=True&a=1&b=False&l=x&l=2&s=a+b%26c`);
    } finally {
      await import('node:fs/promises').then((fs) => fs.rm(join(tmp.dir, 'esdc.session'), { force: true }));
    }
  });

  it('create/set/delete/help: the parameters as a JSON body with its length', async () => {
    const s = await okServer();
    await es(s, ['create', '/x', '-a', '1', '-t', 'TRUE', '-n', 'null', '-j', 'json::{"k":[1,"é"]}', '-e', '']);
    await es(s, ['set', '/x/y/']);
    await es(s, ['delete', '/x', '-snapnames', 'json::["a","b"]']);
    await es(s, ['help', '/x']);
    const [c, u, d, h] = s.requests;
    expect([c!.method, u!.method, d!.method, h!.method]).toEqual(['POST', 'PUT', 'DELETE', 'OPTIONS']);
    expect(c!.url).toBe('/api/x/');
    expect(u!.url).toBe('/api/x/y/');
    expect(c!.body).toBe('{"a": "1", "t": true, "n": null, "j": {"k": [1, "\\u00e9"]}, "e": ""}');
    expect(c!.headers['content-length']).toBe(String(c!.body.length));
    expect(sentHeaderNames(c!.rawHeaders).at(-1)).toBe('Content-Length');
    expect(u!.body).toBe('{}');
    expect(d!.body).toBe('{"snapnames": ["a", "b"]}');
    expect(h!.body).toBe('{}');
  });

  it('login posts to /accounts/login/ without a stored token; logout is a GET with a query', async () => {
    const s = await serve((req, res) => res.writeHead(200, JSON_HEADERS).end(req.url.startsWith('/api/accounts/login/') ? '{"token": "new-token"}' : '{"detail": "Bye."}'));
    writeFileSync(join(tmp.dir, 'esdc.session'), 'old-token');
    const r = await es(s, ['login', '-username', 'u', '-password', 'p']);
    expect(r.code).toBe(0);
    expect(s.requests[0]).toMatchObject({ method: 'POST', url: '/api/accounts/login/', body: '{"username": "u", "password": "p"}' });
    expect(s.requests[0]!.headers['authorization']).toBeUndefined();
    expect(readFileSync(join(tmp.dir, 'esdc.session'), 'utf8')).toBe('new-token');
    await es(s, ['logout', '-x', 'true']);
    expect(s.requests[1]).toMatchObject({ method: 'GET', url: '/api/accounts/logout/?x=True', body: '' });
    expect(s.requests[1]!.headers['authorization']).toBe('Token new-token');
    expect(existsSync(join(tmp.dir, 'esdc.session'))).toBe(false);
    await es(s, ['login', '/other/login']);
    expect(s.requests[2]!.url).toBe('/api/other/login/');
  });

  it('login answered without a token: exit 4', async () => {
    const s = await serve((_req, res) => res.writeHead(200, JSON_HEADERS).end('{"detail": "hello"}'));
    const r = await es(s, ['login', '-username', 'u', '-password', 'p']);
    expect(r.code).toBe(4);
    expect(out(r).status).toBe(200);
    expect(r.stderr).toBe('\nERROR: Login problem\n');
  });
});

describe('exit codes and answers a real esnap does not give', () => {
  it('5xx: exit 2 with the answer', async () => {
    const s = await serve((_req, res) => res.writeHead(500, JSON_HEADERS).end('{"detail": "Internal server error"}'));
    const r = await es(s, ['get', '/vm']);
    expect(r.code).toBe(2);
    expect(out(r)).toEqual({ method: 'GET', url: `${s.url}/api/vm/`, status: 500, text: { detail: 'Internal server error' } });
    expect(r.stderr).toBe('');
  });

  it('a redirect is not followed (exit 0); a body that is not JSON is shown as text', async () => {
    const s = await serve((req, res) => {
      if (req.url.startsWith('/api/moved')) res.writeHead(301, { Location: '/api/vm/' }).end();
      else res.writeHead(502, { 'Content-Type': 'text/html' }).end('<h1>Bad Gateway</h1>');
    });
    const r = await es(s, ['get', '/moved']);
    expect(r.code).toBe(0);
    expect(out(r)).toMatchObject({ status: 301, text: '' });
    expect(s.requests).toHaveLength(1);
    const g = await es(s, ['get', '/vm', '--csv']);
    expect(g.code).toBe(2);
    expect(g.stdout).toBe('<h1>Bad Gateway</h1>\n');
  });

  it('gzip-encoded answers and streams are decoded', async () => {
    const s = await serve((req, res) => {
      if (req.method === 'GET') res.writeHead(200, { ...JSON_HEADERS, 'Content-Encoding': 'gzip' }).end(gzipSync('{"result": ["a"]}'));
      else res.writeHead(201, { 'Content-Encoding': 'gzip', es_stream: 'True', es_task_id: 't-z' }).end(gzipSync('  200\n{"status": "SUCCESS"}'));
    });
    expect(out(await es(s, ['get', '/vm'])).text).toEqual({ result: ['a'] });
    const p = await es(s, ['create', '/vm']);
    expect(p.stderr).toBe('Waiting for pending task t-z ..\b\n');
    expect(out(p)).toMatchObject({ status: 200, text: { status: 'SUCCESS' } });
  });

  it('connection refused: exit 3, nothing on stdout, what to check on stderr', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await es({ url: `http://127.0.0.1:${port}` }, ['get', '/vm']);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `ERROR: connect ECONNREFUSED 127.0.0.1:${port}\nnothing answers at http://127.0.0.1:${port}/api: is esnap running (npm start)? ES_API_URL points es elsewhere\n`,
    );
    const login = await es({ url: `http://127.0.0.1:${port}` }, ['login', '-username', 'u', '-password', 'p']);
    expect(login.code).toBe(4);
  });

  it('a bad ES_API_URL or ES_TIMEOUT: exit 3', async () => {
    const r = await runEs(['get', '/vm'], { tmp: tmp.dir, env: { ES_API_URL: 'localhost:8000/api' } });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^ERROR: .*ES_API_URL/);
    const t = await runEs(['get', '/vm'], { tmp: tmp.dir, env: { ES_TIMEOUT: 'soon' } });
    expect(t.code).toBe(3);
    expect(t.stderr).toBe("ERROR: ES_TIMEOUT must be a number of seconds, not 'soon'\n");
  });
});

describe('waiting (ES-STREAM)', () => {
  /** 201 with the stream headers, then a space every `everyMs` until the test closes it. */
  const endless = (everyMs: number, taskId: string) =>
    serve((_req, res) => {
      res.writeHead(201, { ...JSON_HEADERS, es_stream: 'True', es_task_id: taskId });
      const t = setInterval(() => res.write(' '), everyMs);
      res.on('close', () => clearInterval(t));
    });

  it('Ctrl-C while waiting: the answer so far, Danube\'s message, exit 5', async () => {
    const s = await endless(30, 't-int');
    const r = await es(s, ['create', '/vm/web01/snapshot/s1', '-disk_id', '1'], {}, (child, o) => {
      void until(() => o.stderr().includes('Waiting for pending task t-int ..')).then(() => child.kill('SIGINT'));
    });
    expect(r.code).toBe(5);
    expect(out(r)).toEqual({ method: 'POST', url: `${s.url}/api/vm/web01/snapshot/s1/`, status: 201, text: '' });
    expect(r.stderr).toMatch(new RegExp(`^Waiting for pending task t-int \\.{2,}\\n${INTERRUPTED}\\nthe task goes on without es: es get /task/t-int/status shows how it ends\\n$`));
  });

  it('Ctrl-C before any answer: only the message, exit 5', async () => {
    const s = await serve(() => undefined);
    const r = await es(s, ['get', '/vm'], {}, (child) => {
      void until(() => s.requests.length > 0).then(() => child.kill('SIGINT'));
    });
    expect(r.code).toBe(5);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`${INTERRUPTED}\n`);
  });

  it('ES_TIMEOUT is the longest silence: keep-alives reset it', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(201, { es_stream: 'True', es_task_id: 't-slow' });
      let n = 0;
      const t = setInterval(() => {
        if (++n <= 6) res.write(' ');
        else clearInterval(t);
      }, 100);
      res.on('close', () => clearInterval(t));
    });
    const started = Date.now();
    // Six keep-alives 100 ms apart, then silence: the 1 s limit is reached after about 1.6 s.
    const r = await es(s, ['create', '/x'], { ES_TIMEOUT: '1' });
    expect(Date.now() - started).toBeGreaterThan(1500);
    expect(r.code).toBe(3);
    expect(out(r)).toMatchObject({ status: 201, text: '' });
    expect(r.stderr).toMatch(/^Waiting for pending task t-slow \.{6}\nERROR: Request to .* timed out\. \(timeout=1\)\nno answer for ES_TIMEOUT=1 seconds; es get \/task\/t-slow\/status shows the task\n$/);
    const silent = await serve(() => undefined);
    const q = await es(silent, ['get', '/vm'], { ES_TIMEOUT: '0.2' });
    expect(q.code).toBe(3);
    expect(q.stdout).toBe('');
  });

  it('a connection that breaks while waiting: exit 3 with the answer so far', async () => {
    const s = await serve((_req, res, raw) => {
      res.writeHead(201, { es_stream: 'True', es_task_id: 't-cut' });
      res.write('  ');
      setTimeout(() => raw.socket.destroy(), 100);
    });
    const r = await es(s, ['create', '/x']);
    expect(r.code).toBe(3);
    expect(out(r)).toMatchObject({ status: 201, text: '' });
    expect(r.stderr).toMatch(/^Waiting for pending task t-cut \.\.\nERROR: .+\nthe connection broke while waiting: es get \/task\/t-cut\/status shows how the task ends\n$/);
  });

  it('a stream without a status line (Danube after its timeout): status "201?", exit 2', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(201, { es_stream: 'True', es_task_id: 't-old' });
      res.end(' {"status": "PENDING", "result": null, "task_id": "t-old"}');
    });
    const r = await es(s, ['create', '/x']);
    expect(r.code).toBe(2);
    expect(out(r)).toMatchObject({ status: '201?', text: { status: 'PENDING', task_id: 't-old' } });
    expect(r.stderr).toBe('Waiting for pending task t-old .\b\nthe wait ended before the task did: es get /task/t-old/status shows how it ends\n');
    const empty = await serve((_req, res) => res.writeHead(201, { es_stream: 'True', es_task_id: 't-e' }).end('   '));
    const e = await es(empty, ['create', '/x']);
    expect(e.code).toBe(2);
    expect(out(e)).toMatchObject({ status: '201?', text: '' });
  });
});

describe('TLS', () => {
  const dir = (): string => tmp.dir;
  let noOpenssl: string | null = null;
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    noOpenssl = 'needs the openssl command (Debian package openssl)';
  }

  it('verifies certificates by default; ES_CA_FILE trusts a CA; ES_SSL_VERIFY=0 accepts any', async (ctx) => {
    if (!requirePlatform(noOpenssl)) return ctx.skip();
    const key = join(dir(), 'key.pem');
    const cert = join(dir(), 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.writeHead(200, JSON_HEADERS).end('{"ok": true}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const strict = await es({ url }, ['get', '/vm']);
      expect(strict.code).toBe(3);
      expect(strict.stdout).toBe('');
      expect(strict.stderr).toMatch(/^ERROR: self[- ]signed certificate\n/);
      expect(strict.stderr).toContain("the server's TLS certificate is not trusted: set ES_CA_FILE");
      const trusted = await es({ url }, ['get', '/vm'], { ES_CA_FILE: cert });
      expect(trusted.code).toBe(0);
      expect(out(trusted)).toEqual({ method: 'GET', url: `${url}/api/vm/`, status: 200, text: { ok: true } });
      const loose = await es({ url }, ['get', '/vm'], { ES_SSL_VERIFY: '0' });
      expect(loose.code).toBe(0);
      const missing = await es({ url }, ['get', '/vm'], { ES_CA_FILE: join(dir(), 'nope.pem') });
      expect(missing.code).toBe(3);
      expect(missing.stderr).toMatch(/^ERROR: cannot read ES_CA_FILE: /);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
