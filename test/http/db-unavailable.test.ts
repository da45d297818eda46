/**
 * While PostgreSQL is down or restarting, the API answers 503 (with Retry-After), never 500: the
 * chaos run (seed 3, `npm run chaos -- --ops 150 --seed 3 --faults 10`) found task status, cancel
 * and run-now answering 500 `Internal server error` during a PostgreSQL restart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../src/db/connect-error.js';
import { PrivatePostgres, privatePgUnavailable } from '../helpers/private-pg.js';
import { platformUnavailable } from '../platform/require.js';
import { newClusterDb, startClusterServer, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';

describe('isDatabaseUnavailable', () => {
  it('knows refused and dropped connections and PostgreSQL shutdown codes, through causes', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    expect(isDatabaseUnavailable(refused)).toBe(true);
    expect(isDatabaseUnavailable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('the database system is starting up'), { code: '57P03' }))).toBe(true);
    expect(isDatabaseUnavailable(new Error('wrapped', { cause: new AggregateError([refused]) }))).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBe(false);
    expect(isDatabaseUnavailable(new TypeError('x is undefined'))).toBe(false);
    expect(isDatabaseUnavailable(null)).toBe(false);
  });
});

describe('API while PostgreSQL is down', () => {
  const unavailable = privatePgUnavailable();
  if (unavailable) {
    platformUnavailable('API while PostgreSQL is down', unavailable);
    return;
  }
  let pgsrv: PrivatePostgres;
  let db: ClusterDb;
  let s: ClusterServer;
  beforeAll(async () => {
    pgsrv = await PrivatePostgres.create();
    db = await newClusterDb(pgsrv.url());
    s = await startClusterServer(db);
  }, 60_000);
  afterAll(async () => {
    await s?.close().catch(() => undefined);
    await db?.drop().catch(() => undefined);
    await pgsrv?.destroy();
  });

  it('answers 503 with Retry-After, and 200 again once the database is back', async () => {
    expect((await s.req('GET', '/api/vm/')).status).toBe(200);
    pgsrv.stop();
    try {
      for (const path of ['/api/vm/', '/api/task/1e1d1-b92191e4-fe5a-4a19-88b2/status/', '/api/vm/nope/snapshot/']) {
        const r = await s.req('GET', path);
        expect(r.status, `${path}: ${r.text}`).toBe(503);
        expect(r.body).toEqual({ detail: 'Service temporarily unavailable, try again later.' });
        expect(r.headers['retry-after']).toBe('1');
      }
      const put = await s.req('PUT', '/api/task/1e1d1-b92191e4-fe5a-4a19-88b2/cancel/', { body: {} });
      expect(put.status, put.text).toBe(503);
    } finally {
      pgsrv.start();
    }
    for (let i = 0; ; i++) {
      const r = await s.req('GET', '/api/vm/');
      if (r.status === 200) break;
      expect(r.status).toBe(503);
      if (i > 100) throw new Error('the API did not come back');
      await new Promise((res) => setTimeout(res, 100));
    }
  }, 60_000);
});
