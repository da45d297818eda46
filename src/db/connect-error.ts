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
