/**
 * Web UI benchmark (issue 7): a VM with 1,000 snapshots; the time from navigation to the VM page's
 * snapshot table being interactive (rows rendered, handlers attached) in headless Chromium.
 * Target: under 1 s. Baseline in the same run: a static HTML page of the same size as everything
 * the app page loads (HTML, script, style and the API's JSON), holding the same 1,000 rows as a
 * table, from the same server; its time is navigation to DOMContentLoaded.
 *
 * Both are read from the page's own clock (`performance.now()` counts from navigation start).
 * Each is loaded once cold and then RUNS times in new tabs of the same browser (warm cache).
 *
 *   npm run bench:ui
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext } from 'playwright-core';
import { createRuntime } from '../src/runtime.js';
import { defaultUiRoot } from '../src/http/ui.js';
import { fmt, percentile } from './lib.js';
import { benchOverview, OVERVIEW_READY_SCRIPT } from './ui-overview.js';

const KEY = 'bench-admin-key-0123456789abcdef';
const ROWS = 1000;
const RUNS = 10;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Marks `window.__ready` when the first snapshot row exists, whatever inserted it. */
const READY_SCRIPT = `(() => {
  const mark = () => { if (!window.__ready && document.querySelector('tbody tr[data-name]')) window.__ready = performance.now(); };
  new MutationObserver(mark).observe(document, { childList: true, subtree: true });
})();`;

async function measure(ctx: BrowserContext, url: string, kind: 'app' | 'static'): Promise<{ ms: number; bytes: number }> {
  const page = await ctx.newPage();
  let bytes = 0;
  page.on('response', (r) => {
    void r.body().then(
      (b) => (bytes += b.length),
      () => undefined,
    );
  });
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  let ms: number;
  if (kind === 'app') {
    await page.waitForFunction(() => (window as unknown as { __ready?: number }).__ready !== undefined, null, { timeout: 10_000 });
    // Interactive: a click on a sort header re-renders at once.
    await page.getByRole('button', { name: /^Name/ }).click();
    ms = await page.evaluate(() => (window as unknown as { __ready: number }).__ready);
  } else {
    ms = await page.evaluate(() => performance.getEntriesByType('navigation').map((e) => (e as PerformanceNavigationTiming).domContentLoadedEventEnd)[0] ?? NaN);
  }
  await page.waitForLoadState('networkidle');
  await page.close();
  return { ms, bytes };
}

function staticPage(rows: readonly Record<string, unknown>[], targetBytes: number): string {
  const head = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>baseline</title></head><body><table><tbody>';
  const body = rows
    .map((r) => `<tr data-name="${String(r['name'])}"><td>${String(r['name'])}</td><td>${String(r['disk_id'])}</td><td>${String(r['created'])}</td><td>${String(r['size'])}</td><td>${String(r['note'])}</td></tr>`)
    .join('');
  const tail = '</tbody></table></body></html>';
  const pad = Math.max(0, targetBytes - head.length - body.length - tail.length - 9);
  return `${head}${body}${tail}<!--${'x'.repeat(pad)}-->`;
}

async function main(): Promise<void> {
  execFileSync(process.execPath, [join(packageRoot, 'ui', 'build.mjs')], { stdio: 'inherit' });
  const dir = await mkdtemp(join(tmpdir(), 'esnap-uibench-'));
  const root = join(dir, 'storage');
  const rt = await createRuntime({
    databaseUrl: `sqlite:${join(dir, 'esnap.db')}`,
    adminApiKey: KEY,
    node: 'bench',
    localAgent: true,
    storages: [{ name: 'default', driver: 'file', root }],
  });
  const baselineFile = join(defaultUiRoot(), `bench-baseline-${randomUUID()}.html`);
  const profile = await mkdtemp(join(tmpdir(), 'esnap-uibench-chromium-'));
  let ctx: BrowserContext | null = null;
  try {
    const db = rt.ctx.db;
    const node = await db.selectFrom('node').selectAll().executeTakeFirstOrThrow();
    const storage = await db.selectFrom('node_storage').selectAll().executeTakeFirstOrThrow();
    const uuid = randomUUID();
    const now = Date.now();
    const iso = new Date(now).toISOString();
    await db
      .insertInto('vm')
      .values({
        uuid, hostname: 'bench01', alias: 'bench01', dc_id: 1, owner_id: 1, node_id: node.id, brand: 'kvm', status: 1, status_change: iso,
        qmp_socket: null, qga_socket: null, snapshot_limit_manual: null, snapshot_limit_auto: null, snapshot_size_limit: null,
        snapshot_size_percent_limit: null, created: iso, changed: iso,
      })
      .execute();
    await db.insertInto('vm_disk').values({ vm_uuid: uuid, real_id: 0, storage_id: storage.id, path: `${uuid}-disk0`, size_mb: 64, created: iso }).execute();
    const rows = Array.from({ length: ROWS }, (_, i) => ({
      vm_uuid: uuid, define_id: null, name: `snap-${i}`, type: i % 4 === 0 ? 1 : 2, status: 1, storage_id: storage.id, size: 4096 * i,
      note: 'benchmark row', fsfreeze: 0, pinned: 0, disk_real_id: 0, status_change: iso,
      created: new Date(now - (ROWS - i) * 60_000).toISOString(), changed: iso,
    }));
    for (let i = 0; i < rows.length; i += 500) await db.insertInto('snapshot').values(rows.slice(i, i + 500)).execute();

    const url = (await rt.app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, '');
    ctx = await chromium.launchPersistentContext(profile, { executablePath: process.env['ESNAP_CHROMIUM'] ?? '/usr/bin/chromium', headless: true, args: ARGS });
    // A signed-in tab: the credentials the sign-in page would have stored.
    await ctx.addInitScript(
      ({ key, ready, overview }) => {
        sessionStorage.setItem('esnap.credentials', JSON.stringify({ kind: 'key', key }));
        sessionStorage.setItem('esnap.identity', JSON.stringify({ username: 'admin', dc: 'main', superAdmin: true, admin: true }));
        new Function(ready)();
        new Function(overview)();
      },
      { key: KEY, ready: READY_SCRIPT, overview: OVERVIEW_READY_SCRIPT },
    );

    const app = `${url}/vm/bench01`;
    const coldApp = await measure(ctx, app, 'app');
    const snapshotsJson = await (await fetch(`${url}/api/vm/bench01/snapshot/?full=true`, { headers: { 'ES-API-KEY': KEY } })).json();
    await writeFile(baselineFile, staticPage((snapshotsJson as { result: Record<string, unknown>[] }).result, coldApp.bytes));
    const baseUrl = `${url}/${baselineFile.split('/').pop()!}`;
    const coldStatic = await measure(ctx, baseUrl, 'static');

    const appRuns: number[] = [];
    const staticRuns: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      appRuns.push((await measure(ctx, app, 'app')).ms);
      staticRuns.push((await measure(ctx, baseUrl, 'static')).ms);
    }
    appRuns.sort((a, b) => a - b);
    staticRuns.sort((a, b) => a - b);
    console.log(`web UI, VM page with ${ROWS} snapshots, headless Chromium (${RUNS} warm runs after one cold load):`);
    console.log(`  app: navigation → snapshot table interactive: cold ${fmt(coldApp.ms)} ms; warm median ${fmt(percentile(appRuns, 50))} ms, p90 ${fmt(percentile(appRuns, 90))} ms (target < 1000 ms)`);
    console.log(`  baseline: static page of the same size (${fmt(coldApp.bytes / 1024)} KiB, ${ROWS} rows), navigation → DOMContentLoaded: cold ${fmt(coldStatic.ms)} ms; warm median ${fmt(percentile(staticRuns, 50))} ms, p90 ${fmt(percentile(staticRuns, 90))} ms`);
    await benchOverview(rt, ctx, url, RUNS);
  } finally {
    await ctx?.close();
    await rm(baselineFile, { force: true });
    await rt.close();
    await rm(dir, { recursive: true, force: true });
    await rm(profile, { recursive: true, force: true });
  }
}

await main();
