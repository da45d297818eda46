/**
 * Two servers sending the first jobs of a new node's queue at the same moment (a scheduler slot
 * ticked by both): each creates the queue, and pg-boss's queue creation inserts the queue's row and
 * then adds its partition's foreign key to that table. Two creations at once deadlocked in
 * PostgreSQL (the first waits for the table lock the second's insert holds, the second for the
 * first's row), the victim's send failed, and its tasks waited for the deadline sweep
 * (slot-scale.test.ts in CI: "scheduled tasks were created but not all could be queued").
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgBossQueue } from '../../src/queue/pgboss.queue.js';
import { nodeQueueName } from '../../src/queue/pgboss.names.js';
import { silentLogger } from '../../src/runtime.js';
import { PG_URL } from '../helpers/server.js';

const schema = `t_${randomBytes(5).toString('hex')}_pgboss`;
const ROUNDS = 12;

describe('pg-boss queue creation by two servers at once', () => {
  let a: PgBossQueue;
  let b: PgBossQueue;
  beforeAll(async () => {
    a = await PgBossQueue.open({ connectionString: PG_URL, schema, role: 'server', log: silentLogger, pollIntervalMs: 60_000 });
    b = await PgBossQueue.open({ connectionString: PG_URL, schema, role: 'server', log: silentLogger, pollIntervalMs: 60_000 });
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.end();
  });

  it(`both sends of a new node's first jobs succeed, ${ROUNDS} nodes in a row`, async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const node = `race${i}`;
      const msg = (side: string) => ({ taskId: `${side}${i}-0000-0000-0000-000000000000`, kind: 'snapshot_create', payload: { i } });
      const sent = await Promise.allSettled([a.sendMany(node, [msg('a')]), b.sendMany(node, [msg('b')])]);
      expect(sent.map((s) => (s.status === 'rejected' ? String((s.reason as Error).message) : 'sent'))).toEqual(['sent', 'sent']);
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        const r = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.job WHERE name = $1`, [nodeQueueName(node)]);
        expect(r.rows[0]!.n).toBe(2);
      } finally {
        await c.end();
      }
    }
  }, 120_000);
});
