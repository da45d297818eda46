/**
 * The local node's heartbeat (issue 12): its `last_heartbeat` keeps advancing while the server
 * runs, in embedded mode (SQLite) as in cluster mode, instead of staying at the start time.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';

// Beats every 100 ms (a third of the silence), so the wait below is a few hundred ms at most.
const SILENCE_S = 0.3;

forEachDb('local node heartbeat', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind, { nodeSilenceS: SILENCE_S });
  });
  afterAll(async () => s.cleanup());

  const lastBeat = async (): Promise<string> => {
    const row = await s.runtime.ctx.db.selectFrom('node').select('last_heartbeat').where('hostname', '=', s.node).executeTakeFirstOrThrow();
    return row.last_heartbeat ?? '';
  };

  it('keeps last_heartbeat current while the server runs', async () => {
    const first = await lastBeat();
    expect(first).not.toBe('');
    // Two beats later than the first value read: the loop goes on, not only once.
    let seen = first;
    for (const _ of [1, 2]) {
      const deadline = Date.now() + 5000;
      let now = await lastBeat();
      while (now <= seen && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        now = await lastBeat();
      }
      expect(now > seen, `last_heartbeat moved past ${seen}`).toBe(true);
      seen = now;
    }
    // The API shows the beat, not the start time.
    const api = await s.req('GET', `/api/node/${s.node}/`);
    expect(Date.parse(api.body.result.last_heartbeat)).toBeGreaterThan(Date.parse(first));
  });
});
