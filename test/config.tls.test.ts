/** ESNAP_TLS_CERT / ESNAP_TLS_KEY, the refusal of plain HTTP off loopback, and TLS files in ESNAP_DATABASE_URL. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, isLoopbackHost, loadConfig, loadServeConfig } from '../src/config.js';
import { makeTestCa, type TestCa } from './helpers/test-ca.js';

let dir: string;
let ca: TestCa;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'esnap-config-tls-'));
  ca = makeTestCa(dir);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('no ConfigError');
}

describe('configuration: TLS', () => {
  it('has no TLS and no plain-text permission by default', () => {
    const c = loadServeConfig({});
    expect(c.tls).toBeNull();
    expect(c.https).toBeNull();
    expect(c.allowPlaintext).toBe(false);
  });

  it('esnap serve reads the certificate and key named by ESNAP_TLS_CERT and ESNAP_TLS_KEY', () => {
    const c = loadServeConfig({ ESNAP_TLS_CERT: ca.certFile, ESNAP_TLS_KEY: ca.keyFile });
    expect(c.tls).toEqual({ certFile: ca.certFile, keyFile: ca.keyFile });
    expect(c.https).toEqual({ cert: readFileSync(ca.certFile, 'utf8'), key: readFileSync(ca.keyFile, 'utf8') });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.https)).toBe(true);
  });

  it('esnap agent (loadConfig) checks the pair but does not read the files', () => {
    const missing = join(dir, 'not-on-this-node.pem');
    expect(loadConfig({ ESNAP_TLS_CERT: missing, ESNAP_TLS_KEY: missing }).tls).toEqual({ certFile: missing, keyFile: missing });
    expect(configError(() => loadConfig({ ESNAP_TLS_CERT: missing }))).toContain('ESNAP_TLS_CERT and ESNAP_TLS_KEY go together');
  });

  it('takes tls_cert and tls_key from the ESNAP_CONFIG file too', async () => {
    const file = join(dir, 'esnap.json');
    await writeFile(file, JSON.stringify({ tls_cert: ca.certFile, tls_key: ca.keyFile, allow_plaintext: 1 }));
    const c = loadServeConfig({ ESNAP_CONFIG: file });
    expect(c.https?.cert).toBe(readFileSync(ca.certFile, 'utf8'));
    expect(c.allowPlaintext).toBe(true);
  });

  it('wants both files or neither', () => {
    expect(configError(() => loadConfig({ ESNAP_TLS_CERT: ca.certFile }))).toBe(
      'ESNAP_TLS_CERT and ESNAP_TLS_KEY go together: set both PEM files, or neither (only ESNAP_TLS_CERT is set)',
    );
    expect(configError(() => loadConfig({ ESNAP_TLS_KEY: ca.keyFile }))).toContain('(only ESNAP_TLS_KEY is set)');
  });

  it('says which file cannot be read', () => {
    const missing = join(dir, 'missing.pem');
    expect(configError(() => loadServeConfig({ ESNAP_TLS_CERT: missing, ESNAP_TLS_KEY: ca.keyFile }))).toBe(
      `ESNAP_TLS_CERT: cannot read ${missing}: ENOENT: no such file or directory, open '${missing}'`,
    );
    expect(configError(() => loadServeConfig({ ESNAP_TLS_CERT: ca.certFile, ESNAP_TLS_KEY: dir }))).toMatch(/^ESNAP_TLS_KEY: cannot read .*EISDIR/);
  });

  it('refuses files that are not a matching PEM certificate and key', async () => {
    // The other CA's certificate with the server's key: both are valid PEM, but they do not match.
    expect(configError(() => loadServeConfig({ ESNAP_TLS_CERT: ca.otherCaFile, ESNAP_TLS_KEY: ca.keyFile }))).toMatch(
      /are not a usable PEM certificate and key: .*key values mismatch/,
    );
    const junk = join(dir, 'junk.pem');
    await writeFile(junk, 'not a certificate\n');
    expect(configError(() => loadServeConfig({ ESNAP_TLS_CERT: junk, ESNAP_TLS_KEY: ca.keyFile }))).toContain('are not a usable PEM certificate and key');
  });

  it('ESNAP_ALLOW_PLAINTEXT is a 1/0 flag', () => {
    expect(loadConfig({ ESNAP_ALLOW_PLAINTEXT: '1' }).allowPlaintext).toBe(true);
    expect(loadConfig({ ESNAP_ALLOW_PLAINTEXT: '0' }).allowPlaintext).toBe(false);
    expect(configError(() => loadConfig({ ESNAP_ALLOW_PLAINTEXT: 'yes' }))).toBe('ESNAP_ALLOW_PLAINTEXT must be 1 or 0 (got "yes")');
  });
});

describe('configuration: plain HTTP only on loopback (esnap serve)', () => {
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.10', '128.0.0.1', '::ffff:10.0.0.1', 'fe80::1', 'esnap.example', 'localhost.example']) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
  });

  it('serves plain HTTP on loopback', () => {
    expect(loadServeConfig({}).listen.host).toBe('127.0.0.1');
    expect(loadServeConfig({ ESNAP_LISTEN: '[::1]:8000' }).listen.host).toBe('::1');
    expect(loadServeConfig({ ESNAP_LISTEN: 'localhost:8000' }).listen.host).toBe('localhost');
  });

  it('refuses plain HTTP elsewhere, naming ESNAP_TLS_CERT and ESNAP_ALLOW_PLAINTEXT', () => {
    for (const listen of ['0.0.0.0:8000', '[::]:8000', '10.1.2.3:8443', 'esnap.example:80']) {
      const msg = configError(() => loadServeConfig({ ESNAP_LISTEN: listen }));
      expect(msg).toContain(`ESNAP_LISTEN ${listen} is reachable from other machines`);
      expect(msg).toContain('ESNAP_TLS_CERT');
      expect(msg).toContain('ESNAP_ALLOW_PLAINTEXT=1');
    }
  });

  it('allows it with TLS or with ESNAP_ALLOW_PLAINTEXT=1', () => {
    expect(loadServeConfig({ ESNAP_LISTEN: '0.0.0.0:8443', ESNAP_TLS_CERT: ca.certFile, ESNAP_TLS_KEY: ca.keyFile }).https).not.toBeNull();
    expect(loadServeConfig({ ESNAP_LISTEN: '0.0.0.0:8000', ESNAP_ALLOW_PLAINTEXT: '1' }).listen.host).toBe('0.0.0.0');
  });

  it('leaves esnap agent alone: it does not listen on ESNAP_LISTEN', () => {
    expect(loadConfig({ ESNAP_LISTEN: '0.0.0.0:8000' }).listen.host).toBe('0.0.0.0');
  });
});

describe('configuration: TLS files in ESNAP_DATABASE_URL', () => {
  it('passes sslmode and the other parameters through unchanged', () => {
    const url = `postgres://esnap@db.example/esnap?sslmode=verify-full&sslrootcert=${ca.caFile}&options=-c%20search_path%3Dtenant`;
    expect(loadConfig({ ESNAP_DATABASE_URL: url }).databaseUrl).toBe(url);
  });

  it('says which file named in the URL cannot be read', () => {
    const missing = join(dir, 'nope.pem');
    for (const name of ['sslrootcert', 'sslcert', 'sslkey']) {
      expect(configError(() => loadConfig({ ESNAP_DATABASE_URL: `postgres://esnap@db.example/esnap?sslmode=verify-full&${name}=${missing}` }))).toBe(
        `ESNAP_DATABASE_URL ${name}: cannot read ${missing}: ENOENT: no such file or directory, open '${missing}'`,
      );
    }
  });
});
