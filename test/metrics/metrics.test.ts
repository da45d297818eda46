/**
 * GET /metrics: Prometheus text behind the API's own authentication, esnap_ names, and the
 * figures the issue asks for, read after real scheduled runs on a manual clock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm, type VmFixture } from '../helpers/fixtures.js';
import { ManualClock, define, recordingLogger, settle } from '../scheduler/helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };

/** `name{labels} value` lines of a metric, as a map from the label text to the value. */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? '', Number(m[3]));
  }
  return out;
}

forEachDb('metrics', (kind) => {
  const clock = new ManualClock('2026-07-01T09:30:00Z');
  const log = recordingLogger();
  let s: Server;
  let vm: VmFixture;
  beforeAll(async () => {
    s = await withServer(kind, { clock, log });
    vm = await makeVm(s, 'mx1', { disks: [1, 1] });
  });
  afterAll(() => s.cleanup());

  it('needs a SuperAdmin API key or token; 403 with the API messages otherwise', async () => {
    const none = await s.req('GET', '/metrics', { key: null });
    expect(none.status).toBe(403);
    expect(none.body).toEqual({ detail: 'Authentication credentials were not provided.' });
    expect((await s.req('GET', '/metrics', { key: 'wrong-key-0123456789' })).body).toEqual({ detail: 'Invalid API key' });
    const plain = await makeUser(s, 'plain');
    const r = await s.req('GET', '/metrics', { key: plain.key });
    expect(r.status).toBe(403);
    expect(r.body).toEqual({ detail: 'Permission denied' });

    const ok = await s.req('GET', '/metrics');
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);

    expect((await s.req('POST', '/api/accounts/user/ops/', { body: { password: 'ops-secret-pw-1', is_super_admin: true } })).status).toBe(201);
    const login = await s.req('POST', '/api/accounts/login/', { key: null, body: { username: 'ops', password: 'ops-secret-pw-1' } });
    const viaToken = await s.req('GET', '/metrics', { key: null, headers: { Authorization: `Token ${login.body.token}` } });
    expect(viaToken.status).toBe(200);
  });

  it('names every metric esnap_ and reports definitions, snapshots, queue, durations and the scheduler', async () => {
    await define(s, 'mx1', vm.uuid, 'h', { schedule: '0 * * * *', retention: 1 });
    await define(s, 'mx1', vm.uuid, 'q', { schedule: '0 0 1 1 *', retention: 1, disk_id: 2 });
    for (const t of ['2026-07-01T10:00:00Z', '2026-07-01T11:00:00Z']) {
      clock.set(t);
      await s.runtime.scheduler.tick();
      await settle(s);
    }
    expect((await s.req('PUT', '/api/vm/mx1/snapshot/h-20260701_110000/', { body: { note: 'x' } })).status).toBe(200);
    expect((await s.req('POST', '/api/vm/mx1/snapshot/manual/', { body: { disk_id: 2 } })).status).toBe(201);
    await settle(s);
    const text = (await s.req('GET', '/metrics')).text;

    const names = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(10);
    for (const n of names) expect(n).toMatch(/^esnap_/);

    const last = samples(text, 'esnap_definition_last_success_timestamp_seconds');
    expect(last.get('{vm="mx1",disk="1",define="h"}')).toBe(Date.parse('2026-07-01T11:00:00Z') / 1000);
    expect(last.get('{vm="mx1",disk="2",define="q"}')).toBe(0);
    const stale = samples(text, 'esnap_definition_stale');
    expect(stale.get('{vm="mx1",disk="1",define="h"}')).toBe(0);
    expect(stale.get('{vm="mx1",disk="2",define="q"}')).toBe(0);
    expect(samples(text, 'esnap_schedule_slots_fired_total').get('{vm="mx1",disk="1",define="h"}')).toBe(2);

    const count = samples(text, 'esnap_snapshots');
    expect(count.get('{vm="mx1",disk="1",status="ok"}')).toBe(1);
    expect(count.get('{vm="mx1",disk="2",status="ok"}')).toBe(1);
    const bytes = samples(text, 'esnap_snapshot_bytes');
    expect(bytes.get('{vm="mx1",disk="1"}')).toBeGreaterThanOrEqual(0);
    expect(samples(text, 'esnap_queue_depth').get(`{node="${s.node}"}`)).toBe(0);

    const durations = samples(text, 'esnap_snapshot_operation_duration_seconds_count');
    expect(durations.get('{operation="create",result="success"}')).toBe(3);
    expect(durations.get('{operation="delete",result="success"}')).toBe(1);
    expect(samples(text, 'esnap_scheduler_tick_duration_seconds_count').get('')).toBeGreaterThanOrEqual(2);
    expect(samples(text, 'esnap_scheduler_tick_lag_seconds').get('')).toBe(0);
  });

  it('flags a definition stale when two periods pass without a success, and alerts once', async () => {
    const other = await makeVm(s, 'mx2', { disks: [1] });
    await define(s, 'mx2', other.uuid, 'st', { schedule: '30 * * * *', retention: 1 });
    await s.runtime.ctx.db.updateTable('vm').set({ status: 9 }).where('uuid', '=', other.uuid).execute();
    const staleOf = async () => samples((await s.req('GET', '/metrics')).text, 'esnap_definition_stale').get('{vm="mx2",disk="1",define="st"}');

    clock.set('2026-07-01T11:30:00Z');
    await s.runtime.scheduler.tick();
    expect(await staleOf()).toBe(0);
    expect(await s.runtime.scheduler.checkStale()).toBe(0);
    clock.set('2026-07-01T12:30:00Z');
    await s.runtime.scheduler.tick();
    expect(await staleOf()).toBe(1);
    expect(await s.runtime.scheduler.checkStale()).toBe(1);
    expect(await s.runtime.scheduler.checkStale()).toBe(0);
    expect(log.messages('error')).toContain('Snapshot definition mx2/disk-1@st is stale (never succeeded).');
    const failures = samples((await s.req('GET', '/metrics')).text, 'esnap_definition_failures_total');
    expect(failures.get('{vm="mx2",disk="1",define="st"}')).toBe(2);

    await s.runtime.ctx.db.updateTable('vm').set({ status: 1 }).where('uuid', '=', other.uuid).execute();
    clock.set('2026-07-01T13:30:00Z');
    await s.runtime.scheduler.tick();
    await settle(s);
    expect(await staleOf()).toBe(0);
    expect(await s.runtime.scheduler.checkStale()).toBe(0);
  });
});

describe('metrics: ESNAP_METRICS_PUBLIC', () => {
  let s: Server;
  beforeAll(async () => {
    s = await withServer('sqlite', { metricsPublic: true });
  });
  afterAll(() => s.cleanup());

  it('serves /metrics without credentials', async () => {
    const r = await s.req('GET', '/metrics', { key: null });
    expect(r.status).toBe(200);
    expect(r.text).toContain('# TYPE esnap_queue_depth gauge');
  });
});
