/** `esnap serve` as a user starts it: a fresh data dir, the key printed once, SQLite under the data dir. */
import { describe, expect, it } from 'vitest';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runEsnap, startServe } from '../helpers/esnap-process.js';
import { useTempDirs } from '../helpers/temp-dirs.js';

/** `esnap serve` on a port of its choosing with a fresh or reused data dir and nothing else configured. */
const serve = (dataDir: string) => startServe({ ESNAP_DATA_DIR: dataDir, ESNAP_NODE: 'testnode' });

describe('esnap serve', () => {
  const tempDir = useTempDirs();

  it('starts on a fresh data dir, prints the admin key once, and stops on SIGTERM', async () => {
    const dir = await tempDir('esnap-serve-');
    const a = await serve(dir);
    const m = /API key for user "admin"[^\n]*\n\n {2}(\S+)/.exec(a.output());
    expect(m).not.toBeNull();
    const key = m![1]!;
    expect(a.output()).toContain(`Use it as:  curl -H 'ES-API-KEY: ${key}' http://127.0.0.1:${a.port}/api/vm/`);
    const nodes = await fetch(`${a.url}/api/node/testnode/storage/?full=true`, { headers: { 'ES-API-KEY': key } });
    expect(nodes.status).toBe(200);
    const body = (await nodes.json()) as { result: Array<{ name: string; driver: string }> };
    expect(body.result.map((s) => [s.name, s.driver])).toEqual([['default', 'file']]);
    expect((await stat(join(dir, 'esnap.db'))).isFile()).toBe(true);
    expect((await stat(join(dir, 'storage'))).isDirectory()).toBe(true);
    expect(await a.stop()).toBe(0);

    const b = await serve(dir);
    expect(b.output()).not.toContain('API key for user');
    expect((await fetch(`${b.url}/api/vm/`, { headers: { 'ES-API-KEY': key } })).status).toBe(200);
    expect(await b.stop()).toBe(0);
  }, 60_000);

  it('exits with status 1 and a clear message on a bad configuration', async () => {
    const r = await runEsnap(['serve'], { ESNAP_STORAGES: 'not json' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ESNAP_STORAGES is not valid JSON');
  });
});
