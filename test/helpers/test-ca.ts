/**
 * A throwaway certificate authority made with the real `openssl` (no shell: argument arrays), for
 * the TLS tests: a CA, a server certificate for 127.0.0.1 (SAN IP:127.0.0.1) signed by it, and a
 * second, unrelated CA that a client can be given to see verification fail.
 *
 *   const ca = makeTestCa(dir);  // ca.caFile, ca.certFile, ca.keyFile, ca.otherCaFile
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCa {
  /** PEM of the CA that signed the server certificate. */
  readonly caFile: string;
  /** PEM of the server certificate (CN and SAN 127.0.0.1). */
  readonly certFile: string;
  /** PEM of the server's private key (unencrypted). */
  readonly keyFile: string;
  /** PEM of another CA, which did not sign anything here. */
  readonly otherCaFile: string;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

// EC keys: generated in milliseconds, unlike RSA, and accepted by Node and PostgreSQL alike.
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string): void {
  openssl(
    ['req', '-x509', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=esnap test ${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
}

export function makeTestCa(dir: string): TestCa {
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  openssl(['req', ...EC_KEY, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  writeFileSync(
    join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem'],
    dir,
  );
  return {
    caFile: join(dir, 'ca.pem'),
    certFile: join(dir, 'server.pem'),
    keyFile: join(dir, 'server.key'),
    otherCaFile: join(dir, 'other-ca.pem'),
  };
}
