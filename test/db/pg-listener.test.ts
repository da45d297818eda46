/**
 * PgListener's one connection takes one statement at a time: subscriptions made in one tick on a
 * connected listener each get their LISTEN, sent one after the other. Before, each sent its own at
 * once, and node-postgres warned "Calling client.query() when the client is already executing a
 * query" at every server start (an error in pg 9). Real PostgreSQL.
 */
import { afterAll, expect, it } from 'vitest';
import pg from 'pg';
import { PgListener } from '../../src/db/pg-listener.js';
import { silentLogger } from '../../src/runtime.js';
import { PG_URL } from '../helpers/server.js';

const warnings: string[] = [];
const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
process.on('warning', onWarning);
const listener = new PgListener(PG_URL, silentLogger);
afterAll(async () => {
  process.off('warning', onWarning);
  await listener.stop();
});

it('subscriptions made in one tick each LISTEN, one statement at a time, and all receive', async () => {
  await listener.start();
  const channels = ['esnap_t_listen_a', 'esnap_t_listen_b', 'esnap_t_listen_c'];
  const got = channels.map((ch) => new Promise<string>((resolve) => listener.listen(ch, resolve)));
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    // A NOTIFY reaches only a connection already listening: repeat until every channel answered.
    const received: string[] = [];
    for (let i = 0; i < 100 && received.length < channels.length; i++) {
      for (const ch of channels) await client.query(`NOTIFY ${ch}, '${ch}-payload'`);
      const settled = await Promise.all(got.map((p) => Promise.race([p, new Promise<null>((r) => setTimeout(() => r(null), 20))])));
      received.splice(0, received.length, ...settled.filter((x): x is string => x !== null));
    }
    expect(received).toEqual(channels.map((ch) => `${ch}-payload`));
  } finally {
    await client.end();
  }
  await new Promise((r) => setImmediate(r));
  expect(warnings.filter((w) => w.includes('already executing a query'))).toEqual([]);
});
