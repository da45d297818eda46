/**
 * Generated input against every endpoint: whatever arrives, the answer is a documented 2xx/4xx
 * (never a 5xx), and a 4xx leaves the database exactly as it was.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm } from '../helpers/fixtures.js';
import { allViews } from '../../src/http/routes.js';

const DOCUMENTED = new Set([200, 201, 400, 403, 404, 405, 406, 409, 410, 412, 413, 415, 417, 423, 428, 429]);
const TABLES = ['dc', 'account', 'dc_admin', 'auth_token', 'node', 'node_storage', 'vm', 'vm_disk', 'snapshot', 'snapshot_define', 'task', 'task_lock', 'task_log'] as const;

const nasty = ['../../etc/passwd', '$(touch /tmp/pwned)', '; rm -rf /', 'a b', '`id`', '\u0000', 'x'.repeat(300), '-1', '1e9', 'all', 'true', 'null', '%', '<script>'];
const KEYS = [
  'disk_id', 'note', 'fsfreeze', 'force', 'target_hostname_or_uuid', 'target_disk_id', 'snapnames', 'full', 'extended',
  'order_by', 'type', 'define', 'schedule', 'retention', 'active', 'desc', 'name', 'alias', 'uuid', 'node', 'owner',
  'status', 'size', 'zpool', 'path', 'qmp_socket', 'qga_socket', 'password', 'api_key', 'username', 'email',
  'is_super_admin', 'api_access', 'is_active', 'dc', 'page', 'pinned', 'tz', 'catchup', 'retention_days', 'access',
  'current_dc', 'brand', 'vm', 'VMS_VM_SNAPSHOT_ENABLED', 'VMS_VM_SNAPSHOT_DEFINE_LIMIT', 'snapshot_limit_manual',
];

const value = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom(...nasty),
  fc.integer({ min: -5, max: 70000 }),
  fc.double({ noNaN: false }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.string({ maxLength: 10 }), fc.integer()), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
  fc.constantFrom('1', '2', '0', '30 5 * * *', '99 99 * * *', 'Europe/Bratislava', 'web01', 'web02', 'daily', 's1', 'default'),
);

const body = fc.oneof(
  { weight: 8, arbitrary: fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 6 }).map((o) => ({ json: o })) },
  { weight: 1, arbitrary: fc.constantFrom('[1,2]', '"text"', '42', '{"a":', '{bad json}', 'null').map((raw) => ({ raw })) },
);

function segmentPool(param: string, node: string): string[] {
  switch (param) {
    case 'hostname_or_uuid':
      return ['web01', 'web02', 'nope', 'a;b', '..', 'x'.repeat(300)];
    case 'snapname':
    case 'snapdef':
      return ['s1', 'daily', 'hourly', 'a b', '$(id)', '..', 'x'.repeat(30)];
    case 'hostname':
      return [node, 'nope', '..'];
    case 'zpool':
      return ['default', 'nope'];
    case 'disk_id':
      return ['1', '2', '0', 'x', '-1', '7'];
    case 'task_id':
      return ['1e1d1-6f75849b-1111-2222-3333', 'garbage', '1d1d1-6f75849b-0000-0000-0000'];
    case 'username':
      return ['admin', 'nobody', '_system', 'newuser', 'a b'];
    case 'dc':
    case 'dcPrefix':
      return ['main', 'nope', 'other'];
    default:
      return ['x', '1', '..'];
  }
}

/** Columns background loops write on their own (the local node's heartbeat, the storage usage report): no request's doing. */
const VOLATILE: Partial<Record<(typeof TABLES)[number], readonly string[]>> = { node: ['last_heartbeat'], node_storage: ['size', 'size_free'] };

async function fingerprint(s: TestServer): Promise<string> {
  const h = createHash('sha256');
  for (const t of TABLES) {
    const rows = await s.runtime.ctx.db.selectFrom(t).selectAll().execute();
    const volatile = VOLATILE[t] ?? [];
    const sorted = rows.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).filter(([k]) => !volatile.includes(k))))).sort();
    h.update(`${t}:${sorted.join('\n')}\n`);
  }
  return h.digest('hex');
}

async function settle(s: TestServer): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const busy = await s.runtime.ctx.db.selectFrom('task').select('id').where('state', 'in', ['PENDING', 'STARTED']).execute();
    if (busy.length === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('tasks did not settle');
}

forEachDb('generated input at every endpoint', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let fuzzKey: string;
  beforeAll(async () => {
    s = await withServer(kind);
    fuzzKey = (await makeUser(s, 'fuzzer', { superAdmin: true })).key;
    await makeVm(s, 'web01', { disks: [2, 2] });
    await makeVm(s, 'web02', { disks: [2] });
  });
  afterAll(async () => s.cleanup());

  it('answers with a documented status and leaves the database alone on 4xx', async () => {
    const views = allViews();
    const target = fc.record({
      view: fc.constantFrom(...views),
      dcPrefix: fc.boolean(),
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'GET', 'PATCH'),
      body,
      seeds: fc.array(fc.nat(), { minLength: 4, maxLength: 4 }),
      plainUser: fc.boolean(),
    });
    const plain = await makeUser(s, 'plainfuzz');
    await fc.assert(
      fc.asyncProperty(target, async (t) => {
        await settle(s);
        let i = 0;
        let path = t.view.path.replace(/:([A-Za-z_]+)/g, (_m, p: string) => {
          const pool = segmentPool(p, s.node);
          return encodeURIComponent(pool[t.seeds[i++ % 4]! % pool.length]!);
        });
        if (t.view.dcBound && t.dcPrefix) path = `/dc/main${path}`;
        const opts: Parameters<TestServer['req']>[2] = { key: t.plainUser ? plain.key : fuzzKey };
        if (t.method === 'GET') {
          if ('json' in t.body) {
            opts.query = Object.fromEntries(Object.entries(t.body.json).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
          }
        } else if ('json' in t.body) opts.body = t.body.json;
        else opts.rawBody = t.body.raw;
        if (opts.rawBody !== undefined) opts.headers = { 'Content-Type': 'application/json' };
        const before = await fingerprint(s);
        const r = await s.req(t.method, `/api${path}/`, opts);
        expect(DOCUMENTED.has(r.status), `${t.method} ${path} ${JSON.stringify(t.body)} → ${r.status} ${r.text.slice(0, 300)}`).toBe(true);
        expect(r.body, `${t.method} ${path}: body is JSON`).toBeDefined();
        if (r.status >= 400 && r.status !== 429) {
          const after = await fingerprint(s);
          expect(after, `${t.method} ${path} ${JSON.stringify(t.body)} → ${r.status} changed the database`).toBe(before);
        }
      }),
      { numRuns: 250, seed: fuzzSeed() },
    );
  }, 240_000);
});

/** A fixed seed in CI (a green run stays green), a fresh one elsewhere (new cases every run); ESNAP_FUZZ_SEED wins. */
function fuzzSeed(): number {
  const env = process.env['ESNAP_FUZZ_SEED'];
  if (env) return Number(env);
  return process.env['CI'] === 'true' ? 20261127 : Date.now() % 1_000_000;
}
