/**
 * The overview part of the web UI benchmark (issue 16): a DC with 1,000 VMs, 50,000 snapshots and
 * 2,000 definitions; the time from navigation to the overview's data marker
 * (`main[data-ready="overview"]`, set once the problems panel, VM table and nodes are rendered)
 * in headless Chromium, and the gzipped JavaScript the first page loads. Targets: < 1 s, < 100 KB.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';
import type { Runtime } from '../src/runtime.js';
import { defaultUiRoot } from '../src/http/ui.js';
import { fmt, percentile } from './lib.js';

export const VMS = 1000;
export const SNAPSHOTS_PER_VM = 50;
export const DEFINITIONS_PER_VM = 2;

export async function seed(rt: Runtime): Promise<void> {
  const db = rt.ctx.db;
  const node = await db.selectFrom('node').selectAll().executeTakeFirstOrThrow();
  const storage = await db.selectFrom('node_storage').selectAll().executeTakeFirstOrThrow();
  const now = Date.now();
  const iso = new Date(now).toISOString();
  const vms = Array.from({ length: VMS }, (_, i) => ({
    uuid: randomUUID(), hostname: `ov${String(i).padStart(4, '0')}`, alias: `overview vm ${i}`, dc_id: 1, owner_id: 1, node_id: node.id, brand: 'kvm',
    status: 1, status_change: iso, qmp_socket: null, qga_socket: null, snapshot_limit_manual: null, snapshot_limit_auto: null,
    snapshot_size_limit: null, snapshot_size_percent_limit: null, created: iso, changed: iso,
  }));
  for (let i = 0; i < vms.length; i += 200) await db.insertInto('vm').values(vms.slice(i, i + 200)).execute();
  const disks = vms.map((v) => ({ vm_uuid: v.uuid, real_id: 0, storage_id: storage.id, path: `${v.uuid}-disk0`, size_mb: 10240, created: iso }));
  for (let i = 0; i < disks.length; i += 500) await db.insertInto('vm_disk').values(disks.slice(i, i + 500)).execute();
  // Two definitions per VM; one VM in a hundred has a failing one, one in fifty a stale one.
  const defs = vms.flatMap((v, i) =>
    ['hourly', 'daily'].map((name, j) => ({
      vm_uuid: v.uuid, disk_real_id: 0, name, desc: '', schedule: j === 0 ? '0 * * * *' : '30 5 * * *', retention: 24, active: 1, fsfreeze: 0,
      tz: j === 0 ? 'UTC' : 'Europe/Bratislava', catchup: 0, retention_days: null, next_run: new Date(now + 3_600_000).toISOString(), last_run: iso,
      last_success: i % 50 === 1 && j === 0 ? new Date(now - 5 * 86_400_000).toISOString() : iso,
      last_error: i % 100 === 0 && j === 1 ? 'Got bad return code (1)' : null,
      created: new Date(now - 30 * 86_400_000).toISOString(), changed: iso,
    })),
  );
  for (let i = 0; i < defs.length; i += 500) await db.insertInto('snapshot_define').values(defs.slice(i, i + 500)).execute();
  const snaps = vms.flatMap((v, i) =>
    Array.from({ length: SNAPSHOTS_PER_VM }, (_, k) => ({
      vm_uuid: v.uuid, define_id: null, name: `s${k}`, type: k % 5 === 0 ? 2 : 1, status: i % 200 === 0 && k === 0 ? 4 : 1, storage_id: storage.id,
      size: 1_048_576 * (k + 1), note: '', fsfreeze: 0, pinned: 0, disk_real_id: 0, status_change: iso,
      created: new Date(now - (SNAPSHOTS_PER_VM - k) * 3_600_000).toISOString(), changed: iso,
    })),
  );
  for (let i = 0; i < snaps.length; i += 1000) await db.insertInto('snapshot').values(snaps.slice(i, i + 1000)).execute();
}

/** Gzipped bytes of the scripts index.html loads (the build writes a .gz beside each). */
export function firstPageJsGzip(): { files: string[]; bytes: number } {
  const root = defaultUiRoot();
  const html = readFileSync(join(root, 'index.html'), 'utf8');
  const files = [...html.matchAll(/<script[^>]+src="\/?([^"]+\.js)"/g), ...html.matchAll(/<link[^>]+rel="modulepreload"[^>]+href="\/?([^"]+\.js)"/g)].map((m) => m[1]!);
  return { files, bytes: files.reduce((n, f) => n + statSync(join(root, `${f}.gz`)).size, 0) };
}

/** One load's figures, all in ms from navigation start on the page's own clock. */
interface Timing {
  /** The data marker. */
  readonly ready: number;
  /** index.html and the script received. */
  readonly html: number;
  readonly script: number;
  /** The overview request: sent, answered. */
  readonly apiStart: number;
  readonly apiEnd: number;
}

async function once(ctx: BrowserContext, url: string): Promise<Timing> {
  const page = await ctx.newPage();
  await page.goto(url, { waitUntil: 'commit' });
  await page.waitForSelector('main[data-ready="overview"]', { timeout: 30_000 });
  const t = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
    const res = performance.getEntriesByType('resource') as PerformanceResourceTiming[];
    const script = res.find((r) => r.name.includes('/assets/') && r.name.endsWith('.js'));
    const api = res.find((r) => r.name.includes('/api/overview/?'));
    return {
      ready: (window as unknown as { __overviewReady?: number }).__overviewReady ?? performance.now(),
      html: nav.responseEnd,
      script: script?.responseEnd ?? NaN,
      apiStart: api?.startTime ?? NaN,
      apiEnd: api?.responseEnd ?? NaN,
    };
  });
  const rows = await page.locator('tr[data-vm]').count();
  const range = await page.getByTestId('vm-range').innerText();
  const problems = await page.locator('[data-testid="problems"] li').count();
  // The table shows its first page of VMs; the pager counts them all.
  if (rows === 0 || !range.endsWith(`of ${VMS + 1}`) || problems === 0) throw new Error(`overview incomplete: ${rows} VM rows (${range}), ${problems} problems`);
  await page.close();
  return t;
}

const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);

/** Marks `window.__overviewReady` (ms since navigation) when the overview sets its data marker. */
export const OVERVIEW_READY_SCRIPT = `(() => {
  const mark = () => { if (!window.__overviewReady && document.querySelector('main[data-ready="overview"]')) window.__overviewReady = performance.now(); };
  new MutationObserver(mark).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-ready'] });
})();`;

/** Median ms and size of `runs` GETs of `path` from Node (after one unmeasured). */
async function apiTime(url: string, path: string, runs: number): Promise<{ ms: number; bytes: number }> {
  const get = async (): Promise<number> => (await (await fetch(`${url}${path}`, { headers: { 'ES-API-KEY': 'bench-admin-key-0123456789abcdef' } })).text()).length;
  const bytes = await get();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await get();
    ms.push(performance.now() - t);
  }
  return { ms: median(ms), bytes };
}

export async function benchOverview(rt: Runtime, ctx: BrowserContext, url: string, runs: number): Promise<void> {
  const t0 = Date.now();
  await seed(rt);
  const seeded = Date.now() - t0;
  // What the page asks first, and (baseline, same server) the whole overview in one answer: every VM, 30 days of history.
  const first = await apiTime(url, '/api/overview/?days=0&limit=100&offset=0', runs);
  const whole = await apiTime(url, '/api/overview/', runs);
  const charts = await apiTime(url, '/api/overview/node/?days=30', runs);
  const cold = await once(ctx, `${url}/`);
  const warm: Timing[] = [];
  for (let i = 0; i < runs; i++) warm.push(await once(ctx, `${url}/`));
  const ready = warm.map((t) => t.ready).sort((a, b) => a - b);
  const js = firstPageJsGzip();
  const load = (await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(', ');
  console.log(`web UI, overview with ${VMS} VMs, ${VMS * SNAPSHOTS_PER_VM} snapshots, ${VMS * DEFINITIONS_PER_VM} definitions (seeded in ${fmt(seeded)} ms; load average ${load}):`);
  console.log(`  API from Node, median of ${runs}: the page's first request (problems, 100 VMs, nodes) ${fmt(first.ms)} ms, ${fmt(first.bytes / 1024)} KiB; the storages' charts (second request) ${fmt(charts.ms)} ms`);
  console.log(`  baseline, same server: the whole overview in one answer (every VM, 30 days of history) ${fmt(whole.ms)} ms, ${fmt(whole.bytes / 1024)} KiB`);
  console.log(`  navigation → data marker (problems, first page of the VM table, nodes rendered): cold ${fmt(cold.ready)} ms; warm median ${fmt(percentile(ready, 50))} ms, p90 ${fmt(percentile(ready, 90))} ms (target < 1000 ms)`);
  console.log(
    `  of which (warm medians): index.html ${fmt(median(warm.map((t) => t.html)))} ms, script received ${fmt(median(warm.map((t) => t.script)))} ms, ` +
      `overview request sent ${fmt(median(warm.map((t) => t.apiStart)))} ms and answered ${fmt(median(warm.map((t) => t.apiEnd)))} ms (${fmt(median(warm.map((t) => t.apiEnd - t.apiStart)))} ms in flight), ` +
      `rendered ${fmt(median(warm.map((t) => t.ready - t.apiEnd)))} ms after the answer`,
  );
  console.log(`  JavaScript of the first page, gzipped: ${fmt(js.bytes / 1024)} KiB (${js.files.join(', ')}) (target < 100 KB)`);
}
