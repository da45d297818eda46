/**
 * `esnap serve` listens only once it can work: its local agent has registered the node with the
 * storages' sizes before the port opens (createRuntime does all of that before the bin listens).
 * The real process is started and its port is probed from the first instant, without waiting for
 * the "esnap listening" line: the very first answer of /readyz must be 200, and the very first
 * answer of the node's storage list must carry sizes.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { testDatabases } from '../helpers/server.js';
import { freePort, spawnEsnap } from '../helpers/esnap-process.js';
import { newServeData } from '../helpers/serve-data.js';

const KEY = 'ready-on-listen-key-0123456789';
const NODE = 'readynode';

interface FirstAnswer {
  status: number;
  body: any;
}

/** Requests `url` until the first answer of any kind (a refused connection is no answer). */
async function firstAnswer(url: string, headers: Record<string, string>, alive: () => boolean): Promise<FirstAnswer> {
  const end = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(url, { headers });
      return { status: res.status, body: (await res.json()) as unknown };
    } catch (err) {
      if (!alive()) throw new Error('esnap serve exited before answering', { cause: err });
      if (Date.now() > end) throw new Error(`no answer from ${url}`, { cause: err });
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

describe('esnap serve: ready when it listens', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  for (const kind of testDatabases()) {
    it(`the first /readyz is 200 and the first storage list has sizes [${kind}]`, async () => {
      const data = await newServeData(kind, { prefix: 'esnap-ready-', node: NODE, key: KEY });
      cleanups.push(() => data.cleanup());
      const port = await freePort();
      const p = spawnEsnap(['serve'], { ...data.env, ESNAP_LISTEN: `127.0.0.1:${port}` });
      cleanups.push(async () => {
        await p.stop('SIGKILL');
      });
      const base = `http://127.0.0.1:${port}`;
      try {
        // Both probes start before the process can listen; each keeps its own first answer.
        const [ready, storages] = await Promise.all([
          firstAnswer(`${base}/readyz`, {}, p.alive),
          firstAnswer(`${base}/api/node/${NODE}/storage/?full=true`, { 'ES-API-KEY': KEY }, p.alive),
        ]);
        expect(ready.status).toBe(200);
        expect(ready.body.status).toBe('ready');
        expect(ready.body.checks.agent).toEqual({ ok: true, node: NODE });
        expect(storages.status).toBe(200);
        expect(storages.body.result).toHaveLength(1);
        const [s] = storages.body.result as Array<{ name: string; size: number | null; size_free: number | null }>;
        expect(s!.name).toBe('default');
        expect(s!.size).toEqual(expect.any(Number));
        expect(s!.size_free).toEqual(expect.any(Number));
        expect(s!.size!).toBeGreaterThan(0);
        expect(s!.size_free!).toBeGreaterThan(0);
        expect(s!.size_free!).toBeLessThanOrEqual(s!.size!);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- esnap serve output ---\n${p.output()}`, { cause: err });
      }
      expect(await p.stop('SIGTERM')).toBe(0);
    }, 60_000);
  }
});
