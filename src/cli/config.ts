/**
 * es configuration from the environment (Danube kept these as constants at the top of its
 * script), and the login token store: `<tmpdir>/esdc.session`, mode 0600, the raw token.
 *
 * Differences from Danube, on purpose: TLS certificates are verified unless `ES_SSL_VERIFY=0`;
 * the token store is never followed through a symlink, is truncated before a new token is
 * written, and a store owned by another user is neither read nor written (the default folder is
 * shared by every user of the machine).
 */
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const DEFAULT_API_URL = 'http://127.0.0.1:8000/api';
export const TOKEN_FILE = 'esdc.session';

export interface EsConfig {
  /** Without a trailing slash. */
  readonly apiUrl: string;
  readonly apiKey: string | undefined;
  /** Socket inactivity limit (connect, and between bytes of the answer), as `requests` does. */
  readonly timeoutS: number | undefined;
  readonly sslVerify: boolean;
  readonly caFile: string | undefined;
  readonly tokenStore: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

export function loadConfig(env: Env, tmpdir: string): { ok: true; config: EsConfig } | { ok: false; message: string } {
  const apiUrl = (env['ES_API_URL'] || DEFAULT_API_URL).replace(/\/+$/, '');
  let parsed: URL;
  try {
    parsed = new URL(apiUrl);
  } catch {
    return { ok: false, message: `Invalid URL '${apiUrl}' in ES_API_URL: No schema supplied. Perhaps you meant http://${apiUrl}?` };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return { ok: false, message: `No connection adapters were found for '${apiUrl}' (ES_API_URL must start with http:// or https://)` };
  }
  let timeoutS: number | undefined;
  const rawTimeout = env['ES_TIMEOUT'];
  if (rawTimeout !== undefined && rawTimeout.trim() !== '' && rawTimeout.trim().toLowerCase() !== 'none') {
    timeoutS = Number(rawTimeout);
    if (!Number.isFinite(timeoutS) || timeoutS <= 0) return { ok: false, message: `ES_TIMEOUT must be a number of seconds, not '${rawTimeout}'` };
  }
  const verifyRaw = (env['ES_SSL_VERIFY'] ?? '').trim().toLowerCase();
  return {
    ok: true,
    config: {
      apiUrl,
      apiKey: env['ES_API_KEY'] || undefined,
      timeoutS,
      sslVerify: !['0', 'false', 'no', 'off'].includes(verifyRaw),
      caFile: env['ES_CA_FILE'] || undefined,
      tokenStore: join(tmpdir, TOKEN_FILE),
    },
  };
}

const myUid = (): number | undefined => (typeof process.getuid === 'function' ? process.getuid() : undefined);

/** The stored token (first line), or a note why it was not used. */
export function readToken(path: string): { token?: string; note?: string } {
  let text: string;
  try {
    const st = statSync(path);
    const uid = myUid();
    if (uid !== undefined && st.uid !== uid) return { note: `Ignoring token store ${path}: it belongs to another user` };
    text = readFileSync(path, 'utf8');
  } catch {
    return {};
  }
  const token = (text.split('\n')[0] ?? '').replace(/\r$/, '');
  return token ? { token } : {};
}

export function writeToken(path: string, token: string): void {
  const uid = myUid();
  try {
    if (uid !== undefined && lstatSync(path).uid !== uid) throw new Error(`${path} belongs to another user`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | (constants.O_NOFOLLOW ?? 0);
  const fd = openSync(path, flags, 0o600);
  try {
    if (uid !== undefined && fstatSync(fd).uid !== uid) throw new Error(`${path} belongs to another user`);
    // The mode of open() applies only to a new file; an old store may have been wider.
    fchmodSync(fd, 0o600);
    writeSync(fd, token);
  } finally {
    closeSync(fd);
  }
}

export function deleteToken(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Nothing stored: nothing to delete (Danube ignores this too).
  }
}
