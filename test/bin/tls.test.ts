/**
 * `esnap serve` over HTTPS as a user runs it: a CA and a server certificate for 127.0.0.1 made with
 * the real openssl, the built server with ESNAP_TLS_CERT/ESNAP_TLS_KEY, and the built `es` trusting
 * the CA through ES_CA_FILE (or not). Also the refusal of plain HTTP on a non-loopback address.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestCa, type TestCa } from '../helpers/test-ca.js';
import { spawnEsnap, startServe, type EsnapServe } from '../helpers/esnap-process.js';
import { useTempDirs } from '../helpers/temp-dirs.js';
import { assertBuilt, makeTmp, out, runEs, type EsResult } from '../cli/es-helpers.js';

const CERT_HINT = "the server's TLS certificate is not trusted: set ES_CA_FILE to its CA's PEM file, or ES_SSL_VERIFY=0 to skip the check";

/** A request with node:https, trusting `ca`: status and body. */
function httpsGet(url: string, ca: string, headers: Record<string, string>): Promise<{ status: number; body: string; httpVersion: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, httpVersion: res.httpVersion }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('esnap serve over HTTPS', () => {
  let dir: string;
  let ca: TestCa;
  let port: number;
  let server: EsnapServe;
  let key: string;
  let tmp: ReturnType<typeof makeTmp>;
  const es = (args: string[], env: Record<string, string>): Promise<EsResult> =>
    runEs(args, { tmp: tmp.dir, env: { ES_API_URL: `https://127.0.0.1:${port}/api`, ES_API_KEY: key, ...env } });

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(join(tmpdir(), 'esnap-tls-'));
    tmp = makeTmp();
    ca = makeTestCa(dir);
    server = await startServe({
      ESNAP_DATA_DIR: join(dir, 'data'),
      ESNAP_NODE: 'testnode',
      ESNAP_TLS_CERT: ca.certFile,
      ESNAP_TLS_KEY: ca.keyFile,
    });
    port = server.port;
    const m = /API key for user "admin"[^\n]*\n\n {2}(\S+)/.exec(server.output());
    if (!m) throw new Error(`no key printed (exit code ${server.proc.exitCode}): ${server.output()}`);
    key = m[1]!;
  }, 60_000);
  afterAll(async () => {
    if (server) expect(await server.stop()).toBe(0);
    tmp?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('prints the https URL in its hint and its log', () => {
    expect(server.output()).toContain(`Use it as:  curl -H 'ES-API-KEY: ${key}' https://127.0.0.1:${port}/api/vm/`);
    expect(server.output()).toMatch(new RegExp(`"address":"https://127\\.0\\.0\\.1:${port}"`));
  });

  it('es with ES_CA_FILE works: reads, and a snapshot task waited for with ES-STREAM', async () => {
    const ok = { ES_CA_FILE: ca.caFile };
    const list = await es(['get', '/vm'], ok);
    expect(list.code, list.stderr).toBe(0);
    expect(out(list)).toMatchObject({ method: 'GET', url: `https://127.0.0.1:${port}/api/vm/`, status: 200, text: { status: 'SUCCESS', result: [] } });
    expect((await es(['create', '/vm/web01/define', '-alias', 'web'], ok)).code).toBe(0);
    expect((await es(['create', '/vm/web01/define/disk/1', '-size', '8'], ok)).code).toBe(0);
    const snap = await es(['create', '/vm/web01/snapshot/s1', '-disk_id', '1'], ok);
    expect(snap.code, snap.stderr).toBe(0);
    // es prints the final status of the ES-STREAM answer.
    expect(out(snap)).toMatchObject({ status: 200, text: { status: 'SUCCESS', result: { message: 'Snapshot successfully created' } } });
  });

  it('es without ES_CA_FILE, or with another CA, fails with the certificate hint', async () => {
    const envs: Array<Record<string, string>> = [{}, { ES_CA_FILE: ca.otherCaFile }];
    for (const env of envs) {
      const r = await es(['get', '/vm'], env);
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(CERT_HINT);
    }
  });

  it('es with ES_SSL_VERIFY=0 works without the CA', async () => {
    const r = await es(['get', '/vm'], { ES_SSL_VERIFY: '0' });
    expect(r.code, r.stderr).toBe(0);
    expect(out(r).text.result).toEqual(['web01']);
  });

  it('speaks HTTP/1.1 with the same API (and auth) over TLS', async () => {
    const caPem = readFileSync(ca.caFile, 'utf8');
    const r = await httpsGet(`https://127.0.0.1:${port}/api/vm/`, caPem, { 'ES-API-KEY': key });
    expect(r.status).toBe(200);
    expect(r.httpVersion).toBe('1.1');
    expect(JSON.parse(r.body)).toMatchObject({ status: 'SUCCESS', result: ['web01'] });
    const anon = await httpsGet(`https://127.0.0.1:${port}/api/vm/`, caPem, {});
    expect(anon.status).toBe(403);
  });

  it('plain http to the port fails', async () => {
    await expect(fetch(`http://127.0.0.1:${port}/api/vm/`, { headers: { 'ES-API-KEY': key } })).rejects.toThrow();
    const r = await runEs(['get', '/vm'], { tmp: tmp.dir, env: { ES_API_URL: `http://127.0.0.1:${port}/api`, ES_API_KEY: key } });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    // The TLS server drops a plain-text request without an answer.
    expect(r.stderr).toMatch(/^ERROR: /);
    expect(r.stderr).toContain('ES_API_URL must start with https://');
  });
});

describe('esnap serve refuses plain HTTP off loopback', () => {
  const tempDir = useTempDirs();

  it('exits 1 on 0.0.0.0 without TLS, naming ESNAP_TLS_CERT and ESNAP_ALLOW_PLAINTEXT, before anything starts', async () => {
    const dir = await tempDir('esnap-plain-');
    const data = join(dir, 'data');
    const s = spawnEsnap(['serve'], { ESNAP_DATA_DIR: data, ESNAP_NODE: 'testnode', ESNAP_LISTEN: '0.0.0.0:0' });
    expect(await s.exited).toBe(1);
    expect(s.output()).toContain('esnap: configuration error: ESNAP_LISTEN 0.0.0.0:');
    expect(s.output()).toContain('ESNAP_TLS_CERT');
    expect(s.output()).toContain('ESNAP_ALLOW_PLAINTEXT=1');
    // Refused in the configuration: no database, no storage was created.
    expect(existsSync(data)).toBe(false);
  });

  it('starts on 0.0.0.0 with ESNAP_ALLOW_PLAINTEXT=1', async () => {
    const dir = await tempDir('esnap-plain-');
    const s = await startServe({
      ESNAP_DATA_DIR: join(dir, 'data'),
      ESNAP_NODE: 'testnode',
      ESNAP_LISTEN: '0.0.0.0:0',
      ESNAP_ALLOW_PLAINTEXT: '1',
      ESNAP_ADMIN_API_KEY: 'plain-admin-key-0123456789',
    });
    try {
      expect(s.output()).toContain('esnap listening');
      const r = await fetch(`http://127.0.0.1:${s.port}/api/vm/`, { headers: { 'ES-API-KEY': 'plain-admin-key-0123456789' } });
      expect(r.status).toBe(200);
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });
});
