import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgBossQueue } from '../../src/queue/pgboss.queue.js';
import { PgListener } from '../../src/db/pg-listener.js';
import { silentLogger } from '../../src/runtime.js';
import { PG_URL } from '../helpers/server.js';
import { queueContract } from './queue-contract.js';

const schema = `t_${randomBytes(5).toString('hex')}_pgboss`;
const listeners: PgListener[] = [];

queueContract({
  name: 'pg-boss',
  async open() {
    const listener = new PgListener(PG_URL, silentLogger);
    await listener.start();
    listeners.push(listener);
    return PgBossQueue.open({ connectionString: PG_URL, schema, role: 'server', log: silentLogger, listener, pollIntervalMs: 500 });
  },
  persistent: true,
  exactWithdraw: true,
  db: 'postgres',
  async cleanup() {
    for (const l of listeners) await l.stop();
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.end();
  },
});
