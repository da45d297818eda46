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

async function once(ctx: BrowserContext, url: string): Promise<number> {
  const page = await ctx.newPage();
  await page.goto(url, { waitUntil: 'commit' });
  await page.waitForSelector('main[data-ready="overview"]', { timeout: 30_000 });
  const ms = await page.evaluate(() => (window as unknown as { __overviewReady?: number }).__overviewReady ?? performance.now());
  const rows = await page.locator('tr[data-vm]').count();
  const range = await page.getByTestId('vm-range').innerText();
  const problems = await page.locator('[data-testid="problems"] li').count();
  // The table shows its first page of VMs; the pager counts them all.
  if (rows === 0 || !range.endsWith(`of ${VMS + 1}`) || problems === 0) throw new Error(`overview incomplete: ${rows} VM rows (${range}), ${problems} problems`);
  await page.close();
  return ms;
}

/** Marks `window.__overviewReady` (ms since navigation) when the overview sets its data marker. */
export const OVERVIEW_READY_SCRIPT = `(() => {
  const mark = () => { if (!window.__overviewReady && document.querySelector('main[data-ready="overview"]')) window.__overviewReady = performance.now(); };
  new MutationObserver(mark).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-ready'] });
})();`;

export async function benchOverview(rt: Runtime, ctx: BrowserContext, url: string, runs: number): Promise<void> {
  const t0 = Date.now();
  await seed(rt);
  const seeded = Date.now() - t0;
  const api = Date.now();
  for (const p of ['overview']) await (await fetch(`${url}/api/${p}/`, { headers: { 'ES-API-KEY': 'bench-admin-key-0123456789abcdef' } })).text();
  const apiMs = Date.now() - api;
  const cold = await once(ctx, `${url}/`);
  const warm: number[] = [];
  for (let i = 0; i < runs; i++) warm.push(await once(ctx, `${url}/`));
  warm.sort((a, b) => a - b);
  const js = firstPageJsGzip();
  console.log(`web UI, overview with ${VMS} VMs, ${VMS * SNAPSHOTS_PER_VM} snapshots, ${VMS * DEFINITIONS_PER_VM} definitions (seeded in ${fmt(seeded)} ms):`);
  console.log(`  the overview request (GET /api/overview/) from Node: ${fmt(apiMs)} ms`);
  console.log(`  navigation → data marker (problems, first page of the VM table, nodes rendered): cold ${fmt(cold)} ms; warm median ${fmt(percentile(warm, 50))} ms, p90 ${fmt(percentile(warm, 90))} ms (target < 1000 ms)`);
  console.log(`  JavaScript of the first page, gzipped: ${fmt(js.bytes / 1024)} KiB (${js.files.join(', ')}) (target < 100 KB)`);
}
