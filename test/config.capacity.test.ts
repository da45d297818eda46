/**
 * ESNAP_MIN_FREE_PERCENT: parsed once into the configuration (default 5, a number 0–100, 0 turns
 * the floor off, anything else a ConfigError), and the runtime option it becomes reaches the guard.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, ConfigError } from '../src/config.js';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { makeVm } from './helpers/fixtures.js';
import type { TestServer } from './helpers/server.js';
import { runEsnap } from './helpers/esnap-process.js';
import { useTempDirs } from './helpers/temp-dirs.js';

const KEY = 'capacity-test-key-0123456789';

describe('ESNAP_MIN_FREE_PERCENT', () => {
  it('defaults to 5 and takes whole and decimal percentages from 0 to 100', () => {
    expect(loadConfig({}).minFreePercent).toBe(5);
    expect(loadConfig({ ESNAP_MIN_FREE_PERCENT: '' }).minFreePercent).toBe(5);
    for (const [v, n] of [['0', 0], ['2.5', 2.5], ['.5', 0.5], ['10', 10], ['100', 100], [' 7 ', 7]] as const) {
      expect(loadConfig({ ESNAP_MIN_FREE_PERCENT: v }).minFreePercent).toBe(n);
    }
  });

  it('is read from the ESNAP_CONFIG file too, the variable winning', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-config-'));
    try {
      const file = join(dir, 'esnap.json');
      await writeFile(file, JSON.stringify({ min_free_percent: 12 }));
      expect(loadConfig({ ESNAP_CONFIG: file }).minFreePercent).toBe(12);
      expect(loadConfig({ ESNAP_CONFIG: file, ESNAP_MIN_FREE_PERCENT: '3' }).minFreePercent).toBe(3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses anything but a number from 0 to 100', () => {
    for (const v of ['-1', '101', '100.5', 'abc', '5%', '0x10', '1e1', ' ', '5.', 'NaN', 'Infinity']) {
      expect(() => loadConfig({ ESNAP_MIN_FREE_PERCENT: v }), v).toThrow(ConfigError);
      expect(() => loadConfig({ ESNAP_MIN_FREE_PERCENT: v }), v).toThrow(`ESNAP_MIN_FREE_PERCENT must be a number from 0 to 100 (got ${JSON.stringify(v)})`);
    }
  });

  it('stops `esnap serve` before it starts', async () => {
    const r = await runEsnap(['serve'], { ESNAP_MIN_FREE_PERCENT: '150' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('configuration error: ESNAP_MIN_FREE_PERCENT must be a number from 0 to 100 (got "150")');
  });
});

describe('the runtime option minFreePercent', () => {
  // Registered first, so the folders are removed after the runtimes below have closed.
  const tempDir = useTempDirs();
  const runtimes: Runtime[] = [];
  afterAll(async () => {
    for (const r of runtimes) await r.close();
  });

  async function start(minFreePercent: number): Promise<TestServer> {
    const dir = await tempDir('esnap-capacity-');
    const runtime = await createRuntime({
      databaseUrl: `sqlite:${join(dir, 'esnap.db')}`,
      adminApiKey: KEY,
      node: 'n1',
      storages: [{ name: 'default', driver: 'file', root: join(dir, 'storage') }],
      localAgent: true,
      scheduler: false,
      minFreePercent,
    });
    runtimes.push(runtime);
    // makeVm needs only the runtime and the node name.
    return { runtime, node: 'n1' } as TestServer;
  }

  async function create(s: TestServer, name: string) {
    const r = await s.runtime.app.inject({ method: 'POST', url: `/api/vm/v1/snapshot/${name}/`, headers: { 'es-api-key': KEY }, payload: {} });
    return { status: r.statusCode, body: r.json() as unknown };
  }

  let full: TestServer;
  let off: TestServer;
  beforeAll(async () => {
    full = await start(100);
    off = await start(0);
    await makeVm(full, 'v1');
    await makeVm(off, 'v1');
  });

  it('100: no real storage has every byte free, so every create is refused', async () => {
    expect(await create(full, 'a')).toEqual({ status: 417, body: { detail: 'Storage free space below the limit' } });
  });

  it('0: the floor is off, even for a storage recorded as completely full', async () => {
    await off.runtime.ctx.db.updateTable('node_storage').set({ size_free: 0 }).execute();
    expect((await create(off, 'a')).status).toBe(201);
  });
});
