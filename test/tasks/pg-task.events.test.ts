/**
 * Task wake-ups across servers: two PgTaskEvents (two "servers", each with its own LISTEN
 * connection) on one PostgreSQL. A completion notified on one wakes waiters on the other, waiters
 * of another schema are not woken, and a dropped LISTEN connection reconnects and wakes its
 * waiters so that they re-check.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDatabase } from '../../src/db/dialect.js';
import { channelName, PgListener } from '../../src/db/pg-listener.js';
import { PgTaskEvents, TASK_CHANNEL } from '../../src/tasks/pg-task.events.js';
import { silentLogger } from '../../src/runtime.js';
import { PG_URL } from '../helpers/server.js';

const schemaA = `t_${randomBytes(5).toString('hex')}`;
const schemaB = `t_${randomBytes(5).toString('hex')}`;

/** Resolves true when `p` settles within `ms`, false otherwise. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

describe('PgTaskEvents', () => {
  const db = openDatabase(PG_URL).db;
  const listeners: PgListener[] = [];
  const make = async (schema: string) => {
    const l = new PgListener(PG_URL, silentLogger);
    await l.start();
    listeners.push(l);
    return { listener: l, events: new PgTaskEvents(db, l, channelName(TASK_CHANNEL, schema), silentLogger) };
  };
  let a: Awaited<ReturnType<typeof make>>;
  let b: Awaited<ReturnType<typeof make>>;
  let other: Awaited<ReturnType<typeof make>>;

  beforeAll(async () => {
    a = await make(schemaA);
    b = await make(schemaA);
    other = await make(schemaB);
  });
  afterAll(async () => {
    for (const l of listeners) await l.stop();
    await db.destroy();
  });

  it('wakes local waiters at once and waiters on another server through NOTIFY', async () => {
    const local = a.events.next('task-1');
    const remote = b.events.next('task-1');
    const unrelated = b.events.next('task-2');
    const otherSchema = other.events.next('task-1');
    a.events.notify('task-1');
    expect(await settlesWithin(local, 50)).toBe(true);
    expect(await settlesWithin(remote, 2000)).toBe(true);
    expect(await settlesWithin(unrelated, 300)).toBe(false);
    expect(await settlesWithin(otherSchema, 10)).toBe(false);
    b.events.notify('task-2');
    expect(await settlesWithin(unrelated, 2000)).toBe(true);
    other.events.notify('task-1');
    expect(await settlesWithin(otherSchema, 2000)).toBe(true);
  });

  it('a waiter whose signal aborts stops waiting', async () => {
    const ac = new AbortController();
    const w = b.events.next('task-3', ac.signal);
    ac.abort();
    expect(await settlesWithin(w, 50)).toBe(true);
  });

  it('reconnects a dropped LISTEN connection, waking its waiters to re-check, and hears later notifications', async () => {
    const waiting = b.events.next('task-4');
    const before = b.listener.reconnects;
    // Drop b's LISTEN connection from the server side, as a PostgreSQL restart would.
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN "${channelName(TASK_CHANNEL, schemaA)}"%' AND pid <> pg_backend_pid()`,
    );
    expect(rows.length).toBe(2);
    for (const r of rows) await admin.query('SELECT pg_terminate_backend($1)', [r.pid]);
    await admin.end();
    expect(await settlesWithin(waiting, 5000)).toBe(true);
    expect(b.listener.reconnects).toBe(before + 1);
    const later = b.events.next('task-5');
    a.events.notify('task-5');
    expect(await settlesWithin(later, 3000)).toBe(true);
  });
});
