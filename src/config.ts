/**
 * esnap's configuration: built once from the environment and an optional JSON file
 * (`ESNAP_CONFIG`), validated, frozen. Only `src/bin/*` calls `loadConfig`; everything else gets
 * the object passed in.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { StorageConfig } from './storage/drivers.js';

export interface Config {
  readonly listen: { readonly host: string; readonly port: number };
  readonly dataDir: string;
  readonly databaseUrl: string;
  readonly adminApiKey: string | null;
  readonly node: string;
  readonly storages: readonly StorageConfig[];
  readonly localAgent: boolean;
  readonly streamTimeoutS: number;
  readonly agentDeadlineS: number;
  /** ESNAP_NODE_SILENCE_S: heartbeat silence after which a node is unreachable (cluster mode). */
  readonly nodeSilenceS: number;
  readonly scheduleRetryS: number;
  readonly stopGraceS: number;
  /** ESNAP_ALERT_WEBHOOK: URL receiving alerts as JSON POSTs, or null. */
  readonly alertWebhook: string | null;
  /** ESNAP_METRICS_PUBLIC: serve /metrics without authentication. */
  readonly metricsPublic: boolean;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

const STORAGE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function parseListen(v: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 0 || port > 65535) throw new ConfigError(`ESNAP_LISTEN must be host:port (got ${JSON.stringify(v)})`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function parseSeconds(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`${name} must be a positive number of seconds (got ${JSON.stringify(v)})`);
  return n;
}

function parseUrl(name: string, v: string | undefined): string | null {
  if (v === undefined || v === '') return null;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL (got ${JSON.stringify(v)})`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`${name} must be an http(s) URL (got ${JSON.stringify(v)})`);
  return v;
}

function parseFlag(name: string, v: string | undefined, dflt: boolean): boolean {
  if (v === undefined || v === '') return dflt;
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new ConfigError(`${name} must be 1 or 0 (got ${JSON.stringify(v)})`);
}

export function parseStorages(raw: unknown, source: string): StorageConfig[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new ConfigError(`${source} must be a non-empty JSON list of storages`);
  const seen = new Set<string>();
  return raw.map((s, i) => {
    if (typeof s !== 'object' || s === null) throw new ConfigError(`${source}[${i}] must be an object`);
    const o = s as Record<string, unknown>;
    const name = o['name'];
    const driver = o['driver'];
    if (typeof name !== 'string' || !STORAGE_NAME_RE.test(name)) throw new ConfigError(`${source}[${i}].name is missing or invalid`);
    if (seen.has(name)) throw new ConfigError(`${source}: storage ${name} is listed twice`);
    seen.add(name);
    if (typeof driver !== 'string') throw new ConfigError(`${source}[${i}].driver is missing`);
    const out: { name: string; driver: string; root?: string; dataset?: string } = { name, driver };
    if (typeof o['root'] === 'string') out.root = resolve(o['root']);
    if (typeof o['dataset'] === 'string') out.dataset = o['dataset'];
    return Object.freeze(out);
  });
}

export function loadConfig(env: Env = process.env): Config {
  let file: Record<string, unknown> = {};
  if (env['ESNAP_CONFIG']) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(env['ESNAP_CONFIG'], 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
      file = parsed as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`ESNAP_CONFIG ${env['ESNAP_CONFIG']}: ${(err as Error).message}`);
    }
  }
  // Variables win over the file; the file uses the same names without the ESNAP_ prefix, lower case.
  const get = (name: string): string | undefined => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    const f = file[name.replace(/^ESNAP_/, '').toLowerCase()];
    return f === undefined || f === null ? undefined : String(f);
  };
  const dataDir = resolve(get('ESNAP_DATA_DIR') ?? './data');
  const databaseUrl = get('ESNAP_DATABASE_URL') ?? `sqlite:${join(dataDir, 'esnap.db')}`;
  const isSqlite = databaseUrl.startsWith('sqlite:');
  if (!isSqlite && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(`ESNAP_DATABASE_URL must start with sqlite: or postgres:// (got ${JSON.stringify(databaseUrl)})`);
  }
  let storages: StorageConfig[];
  if (env['ESNAP_STORAGES']) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(env['ESNAP_STORAGES']);
    } catch (err) {
      throw new ConfigError(`ESNAP_STORAGES is not valid JSON: ${(err as Error).message}`);
    }
    storages = parseStorages(parsed, 'ESNAP_STORAGES');
  } else if (file['storages'] !== undefined) {
    storages = parseStorages(file['storages'], 'ESNAP_CONFIG storages');
  } else {
    storages = [Object.freeze({ name: 'default', driver: 'file', root: join(dataDir, 'storage') })];
  }
  const adminApiKey = get('ESNAP_ADMIN_API_KEY') ?? null;
  if (adminApiKey !== null && adminApiKey.length < 16) throw new ConfigError('ESNAP_ADMIN_API_KEY must be at least 16 characters');
  const node = get('ESNAP_NODE') ?? hostname();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(node)) throw new ConfigError(`ESNAP_NODE is not a valid host name: ${JSON.stringify(node)}`);
  return Object.freeze({
    listen: Object.freeze(parseListen(get('ESNAP_LISTEN') ?? '127.0.0.1:8000')),
    dataDir,
    databaseUrl,
    adminApiKey,
    node,
    storages: Object.freeze(storages),
    // PostgreSQL is cluster mode: agents run as `esnap agent` on the nodes, not in the server.
    localAgent: parseFlag('ESNAP_LOCAL_AGENT', get('ESNAP_LOCAL_AGENT'), isSqlite),
    streamTimeoutS: parseSeconds('ESNAP_STREAM_TIMEOUT_S', get('ESNAP_STREAM_TIMEOUT_S'), 3600),
    agentDeadlineS: parseSeconds('ESNAP_AGENT_DEADLINE_S', get('ESNAP_AGENT_DEADLINE_S'), 120),
    nodeSilenceS: parseSeconds('ESNAP_NODE_SILENCE_S', get('ESNAP_NODE_SILENCE_S'), 30),
    scheduleRetryS: parseSeconds('ESNAP_SCHEDULE_RETRY_S', get('ESNAP_SCHEDULE_RETRY_S'), 300),
    stopGraceS: parseSeconds('ESNAP_STOP_GRACE_S', get('ESNAP_STOP_GRACE_S'), 30),
    alertWebhook: parseUrl('ESNAP_ALERT_WEBHOOK', get('ESNAP_ALERT_WEBHOOK')),
    metricsPublic: parseFlag('ESNAP_METRICS_PUBLIC', get('ESNAP_METRICS_PUBLIC'), false),
  });
}
