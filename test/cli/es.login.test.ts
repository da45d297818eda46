/**
 * `es login`/`es logout` and the token store `<TMPDIR>/esdc.session` against a real server, and
 * the examples of `es --help` run in order against a fresh one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_KEY, withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';
import { EXAMPLES, HELP, USAGE } from '../../src/cli/help.js';
import { assertBuilt, makeTmp, out, runEs, type EsResult } from './es-helpers.js';

const PASSWORD = 'pw-for-es-tests';

describe('login, logout and the token store', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  let tmp: ReturnType<typeof makeTmp>;
  let store: string;
  let api: string;
  /** Without ES_API_KEY unless given: the token is the credential. */
  const es = (args: string[], env: Record<string, string> = {}): Promise<EsResult> => runEs(args, { tmp: tmp.dir, env: { ES_API_URL: api, ...env } });

  beforeAll(async () => {
    assertBuilt();
    s = await withServer('sqlite');
    api = `${s.url}/api`;
    tmp = makeTmp();
    store = join(tmp.dir, 'esdc.session');
    await makeVm(s, 'web01');
    const r = await es(['set', '/accounts/user/admin', '-password', PASSWORD], { ES_API_KEY: ADMIN_KEY });
    expect(r.code, r.stdout).toBe(0);
  });
  afterAll(async () => {
    await s.cleanup();
    tmp.cleanup();
  });

  it('without credentials: 403, exit 1, and a hint after the answer', async () => {
    const r = await es(['get', '/vm']);
    expect(r.code).toBe(1);
    expect(out(r)).toMatchObject({ status: 403, text: { detail: 'Authentication credentials were not provided.' } });
    expect(r.stderr).toBe('no credentials: run es login or set ES_API_KEY\n');
  });

  it('a wrong password: the answer, exit 4, Login problem, and no token stored', async () => {
    const r = await es(['login', '-username', 'admin', '-password', 'wrong-password']);
    expect(r.code).toBe(4);
    expect(out(r)).toMatchObject({ method: 'POST', url: `${api}/accounts/login/`, status: 400, text: { detail: expect.any(String) } });
    expect(r.stderr).toBe('\nERROR: Login problem\n');
    expect(existsSync(store)).toBe(false);
  });

  it('login without parameters: exit 4 and how to log in', async () => {
    const r = await es(['login']);
    expect(r.code).toBe(4);
    expect(out(r).status).toBe(400);
    expect(r.stderr).toBe('\nERROR: Login problem\nlog in with: es login -username <name> -password <password>\n');
  });

  it('login stores the token (mode 0600); later calls send it; logout deletes it', async () => {
    const r = await es(['login', '-username', 'admin', '-password', PASSWORD]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const o = out(r);
    expect(o).toMatchObject({ method: 'POST', url: `${api}/accounts/login/`, status: 200, text: { detail: 'Welcome to Danube Cloud API.' } });
    const token = o.text.token as string;
    expect(token.length).toBeGreaterThan(10);
    expect(await readFile(store, 'utf8')).toBe(token);
    expect((await stat(store)).mode & 0o777).toBe(0o600);

    const g = await es(['get', '/vm']);
    expect(g.code).toBe(0);
    expect(out(g).text.result).toEqual(['web01']);
    const d = out(await es(['-d', 'get', '/vm']));
    expect(d['request.headers'].Authorization).toBe(`Token ${token}`);
    expect(d['request.headers']['ES-API-KEY']).toBeUndefined();

    const bye = await es(['logout']);
    expect(bye.code).toBe(0);
    expect(out(bye)).toEqual({ method: 'GET', url: `${api}/accounts/logout/`, status: 200, text: { detail: 'Bye.' } });
    expect(existsSync(store)).toBe(false);
    expect((await es(['get', '/vm'])).code).toBe(1);
  });

  it('login ignores a stored token and replaces a wider, longer store with 0600 and the new token only', async () => {
    await writeFile(store, 'x'.repeat(200));
    await chmod(store, 0o644);
    const r = await es(['-d', 'login', '-username', 'admin', '-password', PASSWORD]);
    expect(r.code).toBe(0);
    const o = out(r);
    expect(o['request.headers'].Authorization).toBeUndefined();
    expect(await readFile(store, 'utf8')).toBe(o.text.token);
    expect((await stat(store)).mode & 0o777).toBe(0o600);
  });

  it('a token the server no longer knows: 403 and a hint to log in again', async () => {
    await writeFile(store, 'not-a-valid-token\n');
    const r = await es(['get', '/vm']);
    expect(r.code).toBe(1);
    expect(out(r)).toMatchObject({ status: 403, text: { detail: 'Invalid token.' } });
    expect(r.stderr).toBe('the stored login has expired or ended: run es login again, or set ES_API_KEY\n');
  });

  it('a stored token and an API key go together, as in Danube; the server takes the key', async () => {
    await writeFile(store, 'not-a-valid-token');
    const r = await es(['-d', 'get', '/vm'], { ES_API_KEY: ADMIN_KEY });
    expect(r.code).toBe(0);
    const o = out(r);
    expect(o['request.headers']).toMatchObject({ Authorization: 'Token not-a-valid-token', 'ES-API-KEY': ADMIN_KEY });
    expect(o.text.result).toEqual(['web01']);
  });

  it('logout that fails keeps the token store', async () => {
    await writeFile(store, 'not-a-valid-token');
    const r = await es(['logout']);
    expect(r.code).toBe(1);
    expect(out(r).status).toBe(403);
    expect(existsSync(store)).toBe(true);
  });
});

/** Splits an example line as a shell would (double quotes only; the examples use nothing else). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|(\S+)/g)) words.push(m[1] ?? m[2]!);
  return words;
}

describe('es --help', () => {
  it('prints the usage and the examples on stdout, exit 0; -h and -? too', async () => {
    assertBuilt();
    for (const flag of ['--help', '-h', '-?']) {
      const r = await runEs([flag]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(HELP);
    }
    expect(HELP.startsWith(USAGE)).toBe(true);
    for (const e of EXAMPLES) expect(HELP).toContain(`  ${e}\n`);
  });

  it('a bad or missing action prints the usage on stderr, exit 11', async () => {
    const r = await runEs([]);
    expect(r.code).toBe(11);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`${USAGE}es --help shows examples\n`);
    const bad = await runEs(['fetch', '/vm']);
    expect(bad.code).toBe(11);
    expect(bad.stderr).toBe(`${USAGE}unknown action "fetch": es --help shows the actions and examples\n`);
  });

  it('a missing resource is 12, an unknown output format 13', async () => {
    const r = await runEs(['get']);
    expect(r.code).toBe(12);
    expect(r.stderr).toBe('ERROR: Missing resource\nname the resource after the action, e.g. es get /vm\n');
    const f = await runEs(['get', '/vm', '--xml']);
    expect(f.code).toBe(13);
    expect(f.stderr.split('\n')[0]).toBe('ERROR: Invalid output format');
  });

  it('--version names es and esnap', async () => {
    const r = await runEs(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^es 1\.3\.3 \(esnap \d+\.\d+\.\d+\)\n$/);
  });

  it('its examples work, in order, against a fresh server', async () => {
    const fresh = await withServer('sqlite');
    const tmp = makeTmp();
    try {
      for (const line of EXAMPLES) {
        const [cmd, ...args] = shellWords(line);
        expect(cmd).toBe('es');
        const r = await runEs(args, { tmp: tmp.dir, env: { ES_API_URL: `${fresh.url}/api`, ES_API_KEY: ADMIN_KEY } });
        expect(r.code, `${line}\n${r.stdout}\n${r.stderr}`).toBe(0);
      }
    } finally {
      await fresh.cleanup();
      tmp.cleanup();
    }
  });
});
