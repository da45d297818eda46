/**
 * Alerts: the webhook delivery against a real local HTTP receiver (retries on 5xx and network
 * errors, none on other 4xx, bounded shutdown), and the alerts of automatic snapshots arriving
 * there from a running server.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AlertSink } from '../../src/alerts/alert.sink.js';
import { alerts, type Alert } from '../../src/alerts/alert.messages.js';
import { systemClock } from '../../src/app-context.js';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';
import { ManualClock, define, recordingLogger, settle } from '../scheduler/helpers.js';

interface Receiver {
  url: string;
  bodies: Array<Record<string, unknown>>;
  /** Status to answer for the next requests, consumed in order; 200 when empty. */
  plan: number[];
  /** Milliseconds to wait before answering. */
  delayMs: number;
  close(): Promise<void>;
}

async function receiver(): Promise<Receiver> {
  const r: Omit<Receiver, 'url' | 'close'> = { bodies: [], plan: [], delayMs: 0 };
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString()));
    req.on('end', () => {
      const status = r.plan.shift() ?? 200;
      setTimeout(() => {
        if (status === 200) r.bodies.push({ ...(JSON.parse(data) as Record<string, unknown>), _contentType: req.headers['content-type'] });
        res.writeHead(status).end();
      }, r.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(r, {
    url: `http://127.0.0.1:${port}/hook`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

const sample: Alert = alerts.createFailed('web01', 1, 'daily-20260329_010000', 'daily');

describe('alerts: webhook delivery', () => {
  let rx: Receiver;
  const sinks: AlertSink[] = [];
  const sink = (o: Partial<ConstructorParameters<typeof AlertSink>[0]> = {}) => {
    const log = recordingLogger();
    const observed = { raised: 0, failed: 0 };
    const s = new AlertSink({
      clock: systemClock,
      log,
      webhook: rx.url,
      backoffMs: 5,
      observer: { alertRaised: () => observed.raised++, webhookFailed: () => observed.failed++ },
      ...o,
    });
    sinks.push(s);
    return { s, log, observed };
  };
  beforeAll(async () => {
    rx = await receiver();
  });
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.stop();
    rx.bodies.length = 0;
    rx.plan.length = 0;
    rx.delayMs = 0;
  });
  afterAll(() => rx.close());

  it('logs the alert and posts it as JSON', async () => {
    const { s, log, observed } = sink();
    s.send(sample);
    await s.flush();
    expect(log.messages('error')).toEqual(['Automatic snapshot daily-20260329_010000 of server web01@disk-1 could not be created.']);
    expect(rx.bodies).toHaveLength(1);
    const body = rx.bodies[0]!;
    expect(Object.keys(body)).toEqual(['source', 'type', 'priority', 'message', 'hostname', 'disk_id', 'define', 'snapnames', 'time', '_contentType']);
    expect(body).toMatchObject({
      source: 'esnap',
      type: 'snapshot_create_failed',
      priority: 'ERROR',
      message: 'Automatic snapshot daily-20260329_010000 of server web01@disk-1 could not be created.',
      hostname: 'web01',
      disk_id: 1,
      define: 'daily',
      snapnames: ['daily-20260329_010000'],
      _contentType: 'application/json',
    });
    expect(body['time']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$/);
    expect(observed).toEqual({ raised: 1, failed: 0 });
  });

  it('retries 5xx answers with backoff until the receiver takes it', async () => {
    rx.plan.push(503, 500, 429);
    const { s, observed } = sink();
    s.send(alerts.freezeFailed('web01', 2, 'x-20260101_000000', 'x'));
    await s.flush();
    expect(rx.bodies.map((b) => [b['type'], b['priority']])).toEqual([['freeze_failed', 'WARNING']]);
    expect(observed.failed).toBe(0);
  });

  it('does not retry a refusal (4xx) and gives up after the last attempt, logging both', async () => {
    rx.plan.push(400);
    const { s, log, observed } = sink();
    s.send(sample);
    await s.flush();
    expect(rx.plan).toEqual([]);
    expect(rx.bodies).toEqual([]);
    rx.plan.push(502, 502, 502);
    const three = sink({ attempts: 3 });
    three.s.send(sample);
    await three.s.flush();
    expect(rx.plan).toEqual([]);
    expect(observed.failed).toBe(1);
    expect(three.observed.failed).toBe(1);
    expect(log.messages('error')).toContain(`alert not delivered: ${sample.message}`);
    expect(log.lines.find((l) => l.msg?.startsWith('alert not delivered'))?.obj).toMatchObject({ error: 'HTTP 400' });
  });

  it('retries when nobody listens, and stop() does not wait past its grace', async () => {
    const dead = await receiver();
    await dead.close();
    const { s, log } = sink({ webhook: dead.url, attempts: 2 });
    s.send(sample);
    await s.flush();
    expect(log.messages('error').filter((m) => m.startsWith('alert not delivered'))).toHaveLength(1);

    rx.delayMs = 5000;
    const slow = sink({ stopGraceMs: 100, timeoutMs: 60_000 });
    slow.s.send(sample);
    const t0 = Date.now();
    await slow.s.stop();
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

forEachDb('alerts: from a running server', (kind) => {
  const clock = new ManualClock('2026-08-01T05:59:00Z');
  let rx: Receiver;
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    rx = await receiver();
    s = await withServer(kind, { clock, alertWebhook: rx.url });
  });
  afterAll(async () => {
    await s.cleanup();
    await rx.close();
  });

  it('posts the alerts of spec 8.1 and 8.5 for failed automatic snapshots', async () => {
    const limited = await makeVm(s, 'al1', { disks: [1], limits: { snapshot_limit_auto: 0 } });
    await define(s, 'al1', limited.uuid, 'd', { schedule: '0 6 * * *', retention: 1 });
    const broken = await makeVm(s, 'al2', { disks: [1] });
    await define(s, 'al2', broken.uuid, 'd', { schedule: '0 6 * * *', retention: 1 });
    const { rm } = await import('node:fs/promises');
    await rm(broken.diskPaths[0]!);
    clock.set('2026-08-01T06:00:00Z');
    await s.runtime.scheduler.tick();
    await settle(s);
    await s.runtime.alerts.flush();
    expect(rx.bodies.map((b) => b['message']).sort()).toEqual([
      'Automatic snapshot al1/disk-1@d failed to start.',
      'Automatic snapshot d-20260801_060000 of server al2@disk-1 could not be created.',
    ]);
    expect(rx.bodies.map((b) => b['type']).sort()).toEqual(['snapshot_create_failed', 'snapshot_start_failed']);
    expect((await s.req('GET', '/metrics')).text).toContain('esnap_alerts_total{type="snapshot_start_failed",priority="ERROR"} 1');
  });
});
