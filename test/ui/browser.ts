/**
 * End-to-end helpers: Debian's Chromium driven through playwright-core (no browser download),
 * headless with a fresh profile per suite, pages that record every console error, page error and
 * failed request so tests can assert that the app stays clean, and screenshots as artefacts.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ADMIN_KEY, type TestServer } from '../helpers/server.js';

const require = createRequire(import.meta.url);

export const CHROMIUM = process.env['ESNAP_CHROMIUM'] ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
/** Screenshots are test artefacts in a temporary folder, never in the repository (ESNAP_UI_ARTIFACTS to choose). */
export const ARTIFACTS = process.env['ESNAP_UI_ARTIFACTS'] ?? join(tmpdir(), 'esnap-ui-artifacts');

/** Builds the UI when its sources changed (a no-op otherwise); the server serves dist/ui. */
export function ensureUiBuilt(): void {
  execFileSync(process.execPath, ['ui/build.mjs'], { stdio: 'inherit' });
}

export interface Browser {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/** Chromium with a fresh profile (`--user-data-dir` of a new temp folder, removed on close). */
export async function launchBrowser(): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), 'esnap-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1400, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

export interface WatchedPage {
  readonly page: Page;
  /** Console errors, uncaught page errors and failed requests, in order. */
  readonly problems: string[];
  /** Forgets what was recorded (after a step that fails on purpose). */
  reset(): void;
}

export async function openPage(b: Browser, url: string): Promise<WatchedPage> {
  const page = await b.context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // A request the page gave up because the user navigated on (net::ERR_ABORTED) is not a failure.
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? '';
    if (why !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.method()} ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  page.setDefaultTimeout(10_000);
  await page.goto(url);
  return { page, problems, reset: () => void problems.splice(0) };
}

export async function signInWithKey(page: Page, key = ADMIN_KEY): Promise<void> {
  await page.getByLabel('API key', { exact: true }).fill(key);
  await page.getByLabel('API key', { exact: true }).press('Enter');
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The snapshot row of `name` on `disk` (with that status: ok, pending, rollback, lost). */
export function row(page: Page, name: string, disk = 1, status?: string) {
  const st = status ? `[data-status="${status}"]` : '';
  return page.locator(`table[data-testid="snapshots"] tbody tr[data-name="${name}"][data-disk="${disk}"]${st}`);
}

/** Form controls without an accessible name (label, aria-label, aria-labelledby, or button text). */
export async function unlabelled(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea, button')]
      .filter((el) => {
        const e = el as HTMLInputElement;
        if (e.type === 'hidden') return false;
        const named = (e.labels?.length ?? 0) > 0 || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby');
        return !named && !(el.tagName === 'BUTTON' && (el.textContent ?? '').trim() !== '');
      })
      .map((el) => el.outerHTML.slice(0, 120)),
  );
}

/**
 * Holds the server's agent before each task it is handed, so the UI can be seen while a task
 * runs; the returned function lets the held tasks go on and gives the agent back its own handler.
 */
export function holdAgent(s: TestServer): () => void {
  const agent = s.runtime.agent!;
  const original = agent.handle.bind(agent);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  agent.handle = async (msg) => {
    await gate;
    return original(msg);
  };
  return () => {
    release();
    agent.handle = original;
  };
}

/**
 * axe-core's serious and critical violations on the page as it is now (the script is injected
 * from node_modules, never fetched), as `rule: target` lines.
 */
export async function axeViolations(page: Page): Promise<string[]> {
  const source = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  // Evaluated through the debugging protocol: the app's CSP (script-src 'self') refuses inline script tags.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(source);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: unknown): Promise<{ violations: { id: string; impact: string | null; nodes: { target: unknown[] }[] }[] }> } }).axe;
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => JSON.stringify(n.target)) }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').flatMap((v) => v.targets.map((t) => `${v.id} (${v.impact}): ${t}`));
}

/** True when the page scrolls sideways (wider content than the viewport). */
export async function scrollsSideways(page: Page): Promise<boolean> {
  return page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1);
}

/** Emoji and dingbats in the page's text (headless Chromium here has no font for them). */
export async function emojiIn(page: Page): Promise<string[]> {
  return page.evaluate(() => document.body.innerText.match(/[\p{Extended_Pictographic}\u2600-\u27BF]/gu) ?? []);
}
