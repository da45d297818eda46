/**
 * A PostgreSQL server whose TLS certificate is refused (wrong `sslrootcert`, a certificate for
 * another host name, `sslmode=require` against a self-signed certificate, which node-postgres 8
 * verifies like verify-full) fails deep in a pool with Node's bare "unable to verify the first
 * certificate". `esnap serve` and `esnap agent` translate it here, once, into a message that names
 * the database and what to check.
 *
 * @example
 *   await createRuntime(opts).catch((err: unknown) => { throw explainConnectError(err, url); });
 */

/** Node's codes for a certificate that failed verification (tls.connect). */
const CERT_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export class DatabaseConnectError extends Error {
  override readonly name = 'DatabaseConnectError';
}

/** `host:port` of a PostgreSQL URL, without credentials. */
function serverOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}`;
  } catch {
    return 'the server in ESNAP_DATABASE_URL';
  }
}

/** A DatabaseConnectError (with the original as `cause`) for a refused certificate; any other error unchanged. */
export function explainConnectError(err: unknown, url: string): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code !== 'string' || !CERT_CODES.has(code)) return err;
  return new DatabaseConnectError(
    `cannot connect to PostgreSQL at ${serverOf(url)}: its TLS certificate was refused (${(err as Error).message}); ` +
      'check sslrootcert (the PEM file of the CA that signed it) and the host name in ESNAP_DATABASE_URL',
    { cause: err },
  );
}

/** Node's socket error codes of a database that cannot be reached (down, restarting, dropped link). */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTCONN']);

/** node-postgres's own messages for a connection that went away or never came. */
const UNREACHABLE_MESSAGES = /^(Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|Connection terminated due to connection timeout)/;

/**
 * Whether `err` (or an error in its cause chain, or in an AggregateError) says that the database is
 * not available right now: a refused or dropped connection, or PostgreSQL's own "shutting down",
 * "starting up" and connection-exception classes (SQLSTATE 57P01–57P03, 08xxx). The API answers
 * those with 503 instead of 500: the request may be sent again once the database is back.
 *
 * @example
 *   isDatabaseUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })) // true
 */
export function isDatabaseUnavailable(err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 8) return false;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string') {
    if (UNREACHABLE_CODES.has(e.code)) return true;
    if (/^57P0[123]$/.test(e.code) || /^08[0-9A-Z]{3}$/.test(e.code)) return true;
  }
  if (typeof e.message === 'string' && UNREACHABLE_MESSAGES.test(e.message)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isDatabaseUnavailable(x, depth + 1))) return true;
  return isDatabaseUnavailable(e.cause, depth + 1);
}
