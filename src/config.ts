/**
 * esnap's configuration: built once from the environment and an optional JSON file
 * (`ESNAP_CONFIG`), validated, frozen. Only `src/bin/*` calls `loadConfig`; everything else gets
 * the object passed in.
 */
import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { hostname } from 'node:os';
import { createSecureContext } from 'node:tls';
import { join, resolve } from 'node:path';
import type { StorageConfig } from './storage/drivers.js';
import { LOG_LEVELS, type LogLevel } from './log.js';
import { parseSshAddress, type SshAddress } from './transport/ssh-address.js';

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
  /** ESNAP_FREEZE_LIMIT_S: longest time a guest stays frozen; thawed at the limit. */
  readonly freezeLimitS: number;
  /** ESNAP_ALERT_WEBHOOK: URL receiving alerts as JSON POSTs, or null. */
  readonly alertWebhook: string | null;
  /** ESNAP_METRICS_PUBLIC: serve /metrics without authentication. */
  readonly metricsPublic: boolean;
  /** ESNAP_TASKLOG_DAYS: finished tasks and task-log entries older than this many days are removed. */
  readonly taskLogDays: number;
  /** ESNAP_AGENT_HEALTH_LISTEN: where `esnap agent` serves /healthz and /readyz; null serves none. */
  readonly agentHealthListen: { readonly host: string; readonly port: number } | null;
  /** ESNAP_TLS_CERT / ESNAP_TLS_KEY: paths of the PEM files (read by loadServeConfig); null serves plain HTTP. */
  readonly tls: { readonly certFile: string; readonly keyFile: string } | null;
  /** ESNAP_ALLOW_PLAINTEXT: plain HTTP on a non-loopback ESNAP_LISTEN (see loadServeConfig). */
  readonly allowPlaintext: boolean;
  /** ESNAP_MIN_FREE_PERCENT: storage free-space floor for new snapshots, 0–100 (0: off). */
  readonly minFreePercent: number;
  /** ESNAP_LOG_LEVEL: trace, debug, info (default), warn, error, fatal or silent. */
  readonly logLevel: LogLevel;
  /** ESNAP_PUBLIC_URL: the URL clients use (behind a proxy), without a trailing slash; absolute links are built from it. */
  readonly publicUrl: string | null;
  /** ESNAP_HYPERVISOR / ESNAP_LIBVIRT_URI / ESNAP_LIBVIRT_DC: the agent's hypervisor adapter (src/hypervisor/). */
  readonly hypervisor: HypervisorConfig;
  /** ESNAP_BACKUP_NODE: this agent's node is a backup node (its storages may hold backups). */
  readonly backupNode: boolean;
  /** ESNAP_NODE_ADDRESS: `[user@]host[:port]` where other nodes reach this node's sshd (src/transport/). */
  readonly nodeAddress: SshAddress;
  /** ESNAP_SSH_DIR: the agent's SSH key pair, the authorized-keys and known-hosts files it maintains. */
  readonly sshDir: string;
}

/** `esnap serve`'s configuration: the PEM text of ESNAP_TLS_CERT / ESNAP_TLS_KEY, read and checked. */
export interface ServeConfig extends Config {
  readonly https: { readonly cert: string; readonly key: string } | null;
}

/** `none`: VMs registered through the API; `libvirt`: the node's domains are discovered and kept in sync. */
export type HypervisorConfig =
  | { readonly kind: 'none' }
  | { readonly kind: 'libvirt'; readonly uri: string; readonly dc: string | null };

function parseHypervisor(kind: string | undefined, uri: string | undefined, dc: string | undefined): HypervisorConfig {
  const k = kind ?? 'none';
  if (k === 'none') return Object.freeze({ kind: 'none' });
  if (k !== 'libvirt') throw new ConfigError(`ESNAP_HYPERVISOR must be none or libvirt (got ${JSON.stringify(k)})`);
  const u = uri ?? 'qemu:///system';
  // Passed to virsh as one argument after -c; still, only a URI shape is accepted.
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^\s]*$/.test(u)) throw new ConfigError(`ESNAP_LIBVIRT_URI is not a libvirt URI: ${JSON.stringify(u)}`);
  if (dc !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$/.test(dc)) throw new ConfigError(`ESNAP_LIBVIRT_DC is not a DC name: ${JSON.stringify(dc)}`);
  return Object.freeze({ kind: 'libvirt', uri: u, dc: dc ?? null });
}

function parseNodeAddress(v: string): SshAddress {
  const address = parseSshAddress(v);
  if (!address) throw new ConfigError(`ESNAP_NODE_ADDRESS must be [user@]host[:port] (got ${JSON.stringify(v)})`);
  return address;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

const STORAGE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function parseListen(v: string, name = 'ESNAP_LISTEN'): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 0 || port > 65535) throw new ConfigError(`${name} must be host:port (got ${JSON.stringify(v)})`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function parseOptionalListen(name: string, v: string | undefined): { host: string; port: number } | null {
  return v === undefined ? null : Object.freeze(parseListen(v, name));
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

function parsePositiveInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`${name} must be a positive whole number (got ${JSON.stringify(v)})`);
  return n;
}

/** A percentage 0–100 (decimals allowed), as ESNAP_MIN_FREE_PERCENT takes it. */
function parsePercent(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!/^(\d+(\.\d+)?|\.\d+)$/.test(v.trim()) || n > 100) throw new ConfigError(`${name} must be a number from 0 to 100 (got ${JSON.stringify(v)})`);
  return n;
}

function parseLogLevel(v: string | undefined): LogLevel {
  if (v === undefined || v === '') return 'info';
  const level = LOG_LEVELS.find((l) => l === v.trim().toLowerCase());
  if (!level) throw new ConfigError(`ESNAP_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(v)})`);
  return level;
}

function parseFlag(name: string, v: string | undefined, dflt: boolean): boolean {
  if (v === undefined || v === '') return dflt;
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new ConfigError(`${name} must be 1 or 0 (got ${JSON.stringify(v)})`);
}

/** Both PEM files or neither. */
function parseTls(certPath: string | undefined, keyPath: string | undefined): Config['tls'] {
  if (certPath === undefined && keyPath === undefined) return null;
  if (certPath === undefined || keyPath === undefined) {
    throw new ConfigError(`ESNAP_TLS_CERT and ESNAP_TLS_KEY go together: set both PEM files, or neither (only ${certPath === undefined ? 'ESNAP_TLS_KEY' : 'ESNAP_TLS_CERT'} is set)`);
  }
  return Object.freeze({ certFile: resolve(certPath), keyFile: resolve(keyPath) });
}

/**
 * Reads the PEM files and checks them as a pair, so an unreadable file, a non-PEM file or a key that
 * does not match the certificate stops `esnap serve` before anything starts.
 */
function readTls(tls: NonNullable<Config['tls']>): { cert: string; key: string } {
  const { certFile, keyFile } = tls;
  const read = (name: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`${name}: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  const cert = read('ESNAP_TLS_CERT', certFile);
  const key = read('ESNAP_TLS_KEY', keyFile);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(`ESNAP_TLS_CERT ${certFile} / ESNAP_TLS_KEY ${keyFile} are not a usable PEM certificate and key: ${(err as Error).message}`);
  }
  return Object.freeze({ cert, key });
}

/**
 * node-postgres reads the files named by sslrootcert, sslcert and sslkey in the URL only when it
 * connects, deep in a pool: a missing one is reported here instead, before anything starts.
 */
function checkPgSslFiles(url: string): void {
  let params: URLSearchParams;
  try {
    params = new URL(url).searchParams;
  } catch {
    return; // not a URL Node can parse: node-postgres says what is wrong with it
  }
  for (const name of ['sslrootcert', 'sslcert', 'sslkey']) {
    const file = params.get(name);
    if (file === null) continue;
    try {
      readFileSync(file);
    } catch (err) {
      throw new ConfigError(`ESNAP_DATABASE_URL ${name}: cannot read ${file}: ${(err as Error).message}`);
    }
  }
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 (also IPv4-mapped 127.x) and the name localhost; 0.0.0.0 and :: are every address, not loopback. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
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
  if (!isSqlite) checkPgSslFiles(databaseUrl);
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
    freezeLimitS: parseSeconds('ESNAP_FREEZE_LIMIT_S', get('ESNAP_FREEZE_LIMIT_S'), 60),
    alertWebhook: parseUrl('ESNAP_ALERT_WEBHOOK', get('ESNAP_ALERT_WEBHOOK')),
    metricsPublic: parseFlag('ESNAP_METRICS_PUBLIC', get('ESNAP_METRICS_PUBLIC'), false),
    taskLogDays: parsePositiveInt('ESNAP_TASKLOG_DAYS', get('ESNAP_TASKLOG_DAYS'), 90),
    agentHealthListen: parseOptionalListen('ESNAP_AGENT_HEALTH_LISTEN', get('ESNAP_AGENT_HEALTH_LISTEN')),
    tls: parseTls(get('ESNAP_TLS_CERT'), get('ESNAP_TLS_KEY')),
    allowPlaintext: parseFlag('ESNAP_ALLOW_PLAINTEXT', get('ESNAP_ALLOW_PLAINTEXT'), false),
    minFreePercent: parsePercent('ESNAP_MIN_FREE_PERCENT', get('ESNAP_MIN_FREE_PERCENT'), 5),
    logLevel: parseLogLevel(get('ESNAP_LOG_LEVEL')),
    publicUrl: parseUrl('ESNAP_PUBLIC_URL', get('ESNAP_PUBLIC_URL'))?.replace(/\/+$/, '') ?? null,
    hypervisor: parseHypervisor(get('ESNAP_HYPERVISOR'), get('ESNAP_LIBVIRT_URI'), get('ESNAP_LIBVIRT_DC')),
    // Embedded mode backs up to the server's own second storage; a cluster agent says so itself.
    backupNode: parseFlag('ESNAP_BACKUP_NODE', get('ESNAP_BACKUP_NODE'), isSqlite),
    nodeAddress: parseNodeAddress(get('ESNAP_NODE_ADDRESS') ?? node),
    sshDir: resolve(get('ESNAP_SSH_DIR') ?? join(dataDir, 'ssh')),
  });
}

/**
 * `esnap serve`'s configuration: loadConfig, the TLS files read, and the listener rule. Every request
 * carries an API key, a token or a password, so plain HTTP is refused on any address other machines
 * can reach (anything but loopback; 0.0.0.0 and :: included) unless ESNAP_ALLOW_PLAINTEXT=1 says a
 * TLS proxy or a trusted network takes care of it. `esnap agent` does not listen on ESNAP_LISTEN:
 * it neither reads the PEM files nor applies the rule (an env file shared with the server is fine).
 */
export function loadServeConfig(env: Env = process.env): ServeConfig {
  const config = loadConfig(env);
  const { host, port } = config.listen;
  if (config.tls === null && !config.allowPlaintext && !isLoopbackHost(host)) {
    const at = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    throw new ConfigError(
      `ESNAP_LISTEN ${at} is reachable from other machines, and plain HTTP would send API keys and passwords unencrypted: ` +
        'set ESNAP_TLS_CERT and ESNAP_TLS_KEY to serve HTTPS, or ESNAP_ALLOW_PLAINTEXT=1 if a TLS proxy or a trusted network protects it',
    );
  }
  return Object.freeze({ ...config, https: config.tls ? readTls(config.tls) : null });
}
