import { afterAll, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { forEachDb, PG_URL } from '../helpers/server.js';
import { openDatabase } from '../../src/db/dialect.js';
import { knownMigrations, migrateToLatest, NewerSchemaError } from '../../src/db/migrate.js';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

async function freshUrl(kind: 'sqlite' | 'postgres'): Promise<{ url: string; searchPath?: string }> {
  if (kind === 'sqlite') {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-migrate-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return { url: `sqlite:${join(dir, 'esnap.db')}` };
  }
  const schema = `mig_${randomBytes(5).toString('hex')}`;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`CREATE SCHEMA ${schema}`);
  await c.end();
  cleanups.push(async () => {
    const d = new pg.Client({ connectionString: PG_URL });
    await d.connect();
    await d.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await d.end();
  });
  return { url: PG_URL, searchPath: schema };
}

forEachDb('migrations', (kind) => {
  it('apply every migration once, also when several servers start at once', async () => {
    const { url, searchPath } = await freshUrl(kind);
    const dbs = [0, 1, 2].map(() => openDatabase(url, searchPath ? { searchPath } : {}).db);
    try {
      // PostgreSQL: really concurrent. SQLite (better-sqlite3 is synchronous, one process): one
      // connection after the other, each finding the work done.
      if (kind === 'postgres') await Promise.all(dbs.map((db) => migrateToLatest(db)));
      else for (const db of dbs) await migrateToLatest(db);
      const rows = await (dbs[0] as never as import('kysely').Kysely<any>).selectFrom('esnap_migration').select('name').orderBy('name').execute();
      expect(rows.map((r: { name: string }) => r.name)).toEqual([...knownMigrations]);
      await migrateToLatest(dbs[1]!);
      const again = await (dbs[0] as never as import('kysely').Kysely<any>).selectFrom('esnap_migration').select('name').execute();
      expect(again).toHaveLength(knownMigrations.length);
    } finally {
      for (const db of dbs) await db.destroy();
    }
  });

  it('refuses a database migrated by a newer esnap', async () => {
    const { url, searchPath } = await freshUrl(kind);
    const db = openDatabase(url, searchPath ? { searchPath } : {}).db;
    try {
      await migrateToLatest(db);
      await (db as never as import('kysely').Kysely<any>).insertInto('esnap_migration').values({ name: '9999_future', applied: new Date().toISOString() }).execute();
      await expect(migrateToLatest(db)).rejects.toThrow(NewerSchemaError);
      await expect(migrateToLatest(db)).rejects.toThrow(/9999_future/);
    } finally {
      await db.destroy();
    }
  });
});
