/**
 * What a spawned `esnap serve` with its own agent needs on either test database: a data dir and,
 * on PostgreSQL, a schema of its own (pg-boss's next to it) named in the URL's options.
 *
 * Example:
 *   const data = await newServeData(kind, { prefix: 'esnap-crash-', node: 'crashnode' });
 *   const s = await startServe(data.env);
 *   … openDatabase(data.dbUrl) while it is stopped …
 *   await data.cleanup();
 *
 * For backups: `newBackupServeData(kind, opts)`, the same with two file storages in ESNAP_STORAGES.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_KEY, type TestDb } from './server.js';
import { newClusterDb } from '../cluster/cluster.helpers.js';

export interface ServeData {
  readonly dir: string;
  /** ESNAP_DATA_DIR, ESNAP_ADMIN_API_KEY, ESNAP_NODE, ESNAP_LOCAL_AGENT=1 and, on PostgreSQL, ESNAP_DATABASE_URL. */
  readonly env: Record<string, string>;
  /** The database the server uses (on SQLite the default file in the data dir), to read it directly. */
  readonly dbUrl: string;
  /** Drops the schemas and removes the data dir (stop the server first). */
  cleanup(): Promise<void>;
}

export async function newServeData(kind: TestDb, opts: { prefix: string; node: string; key?: string }): Promise<ServeData> {
  const dir = await mkdtemp(join(tmpdir(), opts.prefix));
  // The server's own agent (on PostgreSQL it is off unless asked for).
  const env: Record<string, string> = { ESNAP_DATA_DIR: dir, ESNAP_ADMIN_API_KEY: opts.key ?? ADMIN_KEY, ESNAP_NODE: opts.node, ESNAP_LOCAL_AGENT: '1' };
  const db = kind === 'postgres' ? await newClusterDb() : null;
  if (db) env['ESNAP_DATABASE_URL'] = db.agentUrl();
  return {
    dir,
    env,
    dbUrl: env['ESNAP_DATABASE_URL'] ?? `sqlite:${join(dir, 'esnap.db')}`,
    async cleanup() {
      await db?.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * newServeData for backup tests: ESNAP_STORAGES names two file storages in the data dir, `default`
 * (the VMs' disks, folder storage/) and `backup` (where a backup definition with zpool 'backup'
 * keeps its restic repository, folder backup/).
 */
export async function newBackupServeData(kind: TestDb, opts: { prefix: string; node: string; key?: string }): Promise<ServeData> {
  const data = await newServeData(kind, opts);
  const storages = [
    { name: 'default', driver: 'file', root: join(data.dir, 'storage') },
    { name: 'backup', driver: 'file', root: join(data.dir, 'backup') },
  ];
  return { ...data, env: { ...data.env, ESNAP_STORAGES: JSON.stringify(storages) } };
}
