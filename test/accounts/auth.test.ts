/**
 * Login, logout, token and key authentication, and the failed-login throttle, over real HTTP on
 * both databases. The server runs on a clock the test moves, so expiry and the throttle window are
 * tested without sleeping; client addresses come from binding the socket to other loopback
 * addresses (127.0.0.x), because esnap keys the throttle on the connection's address.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forEachDb, startTestServer, withServer, type TestServer } from '../helpers/server.js';

class TestClock {
  t = Date.parse('2030-01-01T00:00:00Z');
  now(): Date {
    return new Date(this.t);
  }
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** POST /api/accounts/login from a chosen local address. */
function loginFrom(s: TestServer, from: string, payload: unknown): Promise<Answer> {
  const url = new URL(`${s.url}/api/accounts/login/`);
  const data = JSON.stringify(payload);
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        localAddress: from,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined }));
      },
    );
    r.on('error', reject);
    r.end(data);
  });
}

const LOGIN_FAILED = { detail: 'Unable to log in with provided credentials.' };

forEachDb('accounts: login and authentication', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  const clock = new TestClock();
  beforeAll(async () => {
    s = await withServer(kind, { clock });
    for (const [name, extra] of [
      ['alice', {}],
      ['noapi', { api_access: false }],
      ['gone', { is_active: false }],
    ] as const) {
      const r = await s.req('POST', `/api/accounts/user/${name}/`, { body: { password: `${name}-secret-pw`, ...extra } });
      expect(r.status).toBe(201);
    }
  });
  afterAll(() => s.cleanup());

  const login = (username: string, password: string) =>
    s.req('POST', '/api/accounts/login/', { key: null, body: { username, password } });

  it('logs in with a token that authenticates, and logs out', async () => {
    const r = await login('alice', 'alice-secret-pw');
    expect(r.status).toBe(200);
    expect(Object.keys(r.body)).toEqual(['token', 'expires', 'detail']);
    expect(r.body.detail).toBe('Welcome to Danube Cloud API.');
    expect(r.body.expires).toBe('2030-01-01T01:00:00Z');
    const auth = { key: null, headers: { Authorization: `Token ${r.body.token}` } };
    const me = await s.req('GET', '/api/accounts/user/alice/', auth);
    expect(me.status).toBe(200);
    expect(me.body.result.username).toBe('alice');
    const rows = await s.runtime.ctx.db.selectFrom('auth_token').selectAll().execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.key_hash).not.toBe(r.body.token);
    expect(rows[0]!.key_hash).toMatch(/^[0-9a-f]{64}$/);

    const bye = await s.req('GET', '/api/accounts/logout/', auth);
    expect(bye.status).toBe(200);
    expect(bye.body).toEqual({ detail: 'Bye.' });
    const after = await s.req('GET', '/api/accounts/user/alice/', auth);
    expect(after.status).toBe(403);
    expect(after.body).toEqual({ detail: 'Invalid token.' });
  });

  it('protected endpoints need credentials; logout too', async () => {
    const r = await s.req('GET', '/api/accounts/user/admin/', { key: null });
    expect(r.status).toBe(403);
    expect(r.body).toEqual({ detail: 'Authentication credentials were not provided.' });
    const out = await s.req('GET', '/api/accounts/logout/', { key: null });
    expect(out.status).toBe(403);
  });

  it('a second login replaces the first token', async () => {
    const first = await login('alice', 'alice-secret-pw');
    const second = await login('alice', 'alice-secret-pw');
    expect(second.body.token).not.toBe(first.body.token);
    const old = await s.req('GET', '/api/accounts/user/alice/', { key: null, headers: { Authorization: `Token ${first.body.token}` } });
    expect(old.status).toBe(403);
    expect(old.body).toEqual({ detail: 'Invalid token.' });
    const cur = await s.req('GET', '/api/accounts/user/alice/', { key: null, headers: { Authorization: `Token ${second.body.token}` } });
    expect(cur.status).toBe(200);
  });

  it('a token expires 3600 s after creation, not sliding', async () => {
    const r = await login('alice', 'alice-secret-pw');
    const auth = { key: null, headers: { Authorization: `Token ${r.body.token}` } };
    clock.advance(3599);
    expect((await s.req('GET', '/api/accounts/user/alice/', auth)).status).toBe(200);
    clock.advance(1);
    const expired = await s.req('GET', '/api/accounts/user/alice/', auth);
    expect(expired.status).toBe(403);
    expect(expired.body).toEqual({ detail: 'Authentication credentials were not provided.' });
  });

  it('answers Danube errors for bad keys, users without API access and bad logins', async () => {
    const bad = await s.req('GET', '/api/accounts/user/admin/', { key: 'not-a-key' });
    expect(bad.status).toBe(403);
    expect(bad.body).toEqual({ detail: 'Invalid API key' });

    const key = 'noapi-api-key-0123456789';
    expect((await s.req('PUT', '/api/accounts/user/noapi/', { body: { api_key: key } })).status).toBe(200);
    const noapi = await s.req('GET', '/api/accounts/user/noapi/', { key });
    expect(noapi.status).toBe(403);
    expect(noapi.body).toEqual({ detail: 'User account is not allowed to access API' });

    const l1 = await login('noapi', 'noapi-secret-pw');
    expect(l1.status).toBe(400);
    expect(l1.body).toEqual({ detail: 'User account is not allowed to access API' });
    const l2 = await login('gone', 'gone-secret-pw');
    expect(l2.status).toBe(400);
    expect(l2.body).toEqual({ detail: 'User account is disabled.' });
    const l3 = await s.req('POST', '/api/accounts/login/', { key: null, body: { password: 'x' } });
    expect(l3.status).toBe(400);
    expect(l3.body).toEqual({ detail: { username: ['This field is required.'] } });
    const l4 = await s.req('POST', '/api/accounts/login/', { key: null, body: [1] });
    expect(l4.status).toBe(400);
    expect(l4.body).toEqual({ detail: 'Invalid data' });
    const l5 = await login('_system', '');
    expect(l5.status).toBe(400);
    const l6 = await login('_system', 'anything');
    expect(l6.body).toEqual(LOGIN_FAILED);
    const l7 = await login('nobody', 'whatever');
    expect(l7.status).toBe(400);
    expect(l7.body).toEqual(LOGIN_FAILED);
  });

  describe('failed-login throttle', () => {
    beforeAll(async () => {
      for (const name of ['thr1', 'thr2']) {
        const r = await s.req('POST', `/api/accounts/user/${name}/`, { body: { password: `${name}-secret-pw` } });
        expect(r.status).toBe(201);
      }
    });

    it('throttles a user and an address after 10 failures, never a valid password', async () => {
      for (let i = 0; i < 10; i++) {
        const r = await loginFrom(s, '127.0.0.2', { username: 'thr1', password: `wrong-${i}` });
        expect(r.status).toBe(400);
        expect(r.body).toEqual(LOGIN_FAILED);
      }
      const t = await loginFrom(s, '127.0.0.2', { username: 'thr1', password: 'wrong-again' });
      expect(t.status).toBe(429);
      expect(t.headers['retry-after']).toBe('900');
      expect(t.body).toEqual({ detail: 'Request was throttled. Expected available in 900 seconds.' });

      // The right password still logs in, and does not count as a failure.
      const before = await s.runtime.ctx.db.selectFrom('login_failure').selectAll().execute();
      const good = await loginFrom(s, '127.0.0.2', { username: 'thr1', password: 'thr1-secret-pw' });
      expect(good.status).toBe(200);
      expect(good.body.detail).toBe('Welcome to Danube Cloud API.');
      const after = await s.runtime.ctx.db.selectFrom('login_failure').selectAll().execute();
      expect(after).toHaveLength(before.length);

      // Another user from another address is not affected.
      const other = await loginFrom(s, '127.0.0.3', { username: 'thr2', password: 'wrong' });
      expect(other.status).toBe(400);
      // The throttled address is throttled for every username, the throttled user from every address.
      expect((await loginFrom(s, '127.0.0.2', { username: 'thr2', password: 'wrong' })).status).toBe(429);
      expect((await loginFrom(s, '127.0.0.4', { username: 'thr1', password: 'wrong' })).status).toBe(429);
      // ...but a valid password of another user from the throttled address logs in.
      expect((await loginFrom(s, '127.0.0.2', { username: 'thr2', password: 'thr2-secret-pw' })).status).toBe(200);
      // Other requests are never rate-limited.
      for (let i = 0; i < 60; i++) expect((await s.req('GET', '/api/accounts/user/thr1/')).status).toBe(200);
    });

    it('evaluates exactly 10 of 100 parallel wrong logins for one user from 100 addresses', async () => {
      expect((await s.req('POST', '/api/accounts/user/thr3/', { body: { password: 'thr3-secret-pw' } })).status).toBe(201);
      const answers = await Promise.all(
        Array.from({ length: 100 }, (_, i) => loginFrom(s, `127.0.1.${i + 1}`, { username: 'thr3', password: `wrong-${i}` })),
      );
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((x) => x === 400)).toHaveLength(10);
      expect(statuses.filter((x) => x === 429)).toHaveLength(90);
      const recorded = await s.runtime.ctx.db.selectFrom('login_failure').select('key').where('key', '=', 'user:thr3').execute();
      expect(recorded).toHaveLength(10);
    });

    it('shares the throttle between server processes on one database', async () => {
      const info = (s as unknown as { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string } }).dbInfo;
      const second = await startTestServer(kind, { clock, reuse: info });
      try {
        const r = await loginFrom(second, '127.0.0.5', { username: 'thr1', password: 'wrong' });
        expect(r.status).toBe(429);
        expect(r.headers['retry-after']).toBe('900');
      } finally {
        await second.close();
      }
    });

    it('counts down Retry-After and lets attempts through after 15 minutes', async () => {
      clock.advance(5 * 60);
      const t = await loginFrom(s, '127.0.0.2', { username: 'thr1', password: 'wrong' });
      expect(t.status).toBe(429);
      expect(t.headers['retry-after']).toBe('600');
      expect(t.body.detail).toBe('Request was throttled. Expected available in 600 seconds.');
      clock.advance(599.5);
      const last = await loginFrom(s, '127.0.0.2', { username: 'thr1', password: 'wrong' });
      expect(last.headers['retry-after']).toBe('1');
      expect(last.body.detail).toBe('Request was throttled. Expected available in 1 second.');
      clock.advance(0.5);
      const r = await loginFrom(s, '127.0.0.2', { username: 'thr1', password: 'wrong' });
      expect(r.status).toBe(400);
      expect(r.body).toEqual(LOGIN_FAILED);
      // Failures older than the window were pruned when this one was recorded.
      const cutoff = new Date(clock.t - 15 * 60 * 1000).toISOString();
      const old = await s.runtime.ctx.db.selectFrom('login_failure').selectAll().where('time', '<=', cutoff).execute();
      expect(old).toHaveLength(0);
    });
  });
});
