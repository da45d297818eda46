/**
 * Signing in and out in a real browser, the overview, and what a non-admin may see. The browser
 * console and the network must stay clean on load, sign-in, overview and VM page.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm } from '../helpers/fixtures.js';
import { ensureUiBuilt, launchBrowser, openPage, screenshot, signInWithKey, unlabelled, type Browser } from './browser.js';

const DAY = 86_400_000;

describe('web UI: sign-in, overview, ownership', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  let b: Browser;
  let bob: { id: number; key: string };

  beforeAll(async () => {
    ensureUiBuilt();
    s = await withServer('sqlite');
    b = await launchBrowser();
    bob = await makeUser(s, 'bob');
    await makeVm(s, 'web01', { disks: [4, 4] });
    await makeVm(s, 'db01', { disks: [4] });
    await makeVm(s, 'bobvm', { disks: [4], ownerId: bob.id });
    expect((await s.stream('POST', '/api/vm/web01/snapshot/before/', { body: { disk_id: 'all' } })).finalStatus).toBe(200);
    expect((await s.stream('POST', '/api/vm/db01/snapshot/s1/', { body: {} })).finalStatus).toBe(200);
    // web01's daily definition last succeeded three days ago: stale. db01's hourly one is fresh.
    expect((await s.req('POST', '/api/vm/web01/define/snapshot/daily/', { body: { schedule: '0 3 * * *', retention: 7 } })).status).toBe(201);
    expect((await s.req('POST', '/api/vm/db01/define/snapshot/hourly/', { body: { schedule: '0 * * * *', retention: 7 } })).status).toBe(201);
    const db = s.runtime.ctx.db;
    const defs = await db.selectFrom('snapshot_define').select(['id', 'vm_uuid', 'name']).execute();
    for (const d of defs) {
      const old = d.name === 'daily';
      const created = new Date(Date.now() - (old ? 3 * DAY : 10 * 60_000)).toISOString();
      await db.updateTable('snapshot').set({ type: 1, define_id: d.id, created }).where('vm_uuid', '=', d.vm_uuid).where('disk_real_id', '=', 0).execute();
      await db.updateTable('snapshot_define').set({ last_success: created, last_run: created }).where('id', '=', d.id).execute();
    }
  });
  afterAll(async () => {
    await b?.close();
    await s?.cleanup();
  });

  it('shows both sign-in forms at once; an API key and Enter sign in; the overview is complete and clean', async () => {
    const w = await openPage(b, `${s.url}/`);
    const key = w.page.locator('input[name="api_key"]');
    await expect(key.isVisible()).resolves.toBe(true);
    await expect(w.page.getByLabel('API key', { exact: true }).getAttribute('name')).resolves.toBe('api_key');
    await expect(w.page.getByLabel('Username', { exact: true }).isVisible()).resolves.toBe(true);
    await expect(w.page.getByLabel('Password', { exact: true }).isVisible()).resolves.toBe(true);
    await screenshot(w.page, 'login');

    const urls: string[] = [];
    const headers: Record<string, string>[] = [];
    w.page.on('request', (r) => {
      urls.push(r.url());
      if (r.url().includes('/api/')) headers.push(r.headers());
    });
    await signInWithKey(w.page);
    const vms = w.page.getByRole('table', { name: 'Virtual machines' });
    await vms.getByRole('link', { name: 'web01' }).waitFor();
    const rows = await vms.locator('tbody tr').allInnerTexts();
    expect(rows.map((r) => r.split('\t')[0])).toEqual(['bobvm', 'db01', 'web01']);
    const web01 = vms.locator('tbody tr', { hasText: 'web01' });
    const db01 = vms.locator('tbody tr', { hasText: 'db01' });
    // Node, status, snapshot count, then the health of the schedules, in words and colour.
    expect(await web01.innerText()).toMatch(/web01\s+node1\.test\s+stopped\s+4.0 MiB, 4.0 MiB\s+2\s+/);
    expect(await web01.innerText()).toMatch(/daily \(disk 1\): 3 days ago/);
    expect(await web01.getAttribute('data-protection')).toBe('stale');
    expect(await web01.innerText()).toContain('stale');
    expect(await web01.getAttribute('class')).toContain('row-stale');
    expect(await db01.innerText()).toContain('on schedule');
    expect(await db01.getAttribute('class')).not.toContain('row-stale');
    const nodes = w.page.getByRole('article', { name: /node1\.test/ });
    expect(await nodes.innerText()).toMatch(/node1\.test\s+online/);
    // The problems panel comes first and links to where to act.
    const problems = w.page.getByTestId('problems');
    expect(await problems.locator('li[data-kind="definition_stale"]').innerText()).toContain('Definition daily of web01 (disk 1) is stale');
    expect(await problems.getByRole('link', { name: 'Open the definitions of web01' }).getAttribute('href')).toBe('/vm/web01#definitions');
    await screenshot(w.page, 'overview');
    expect(await unlabelled(w.page)).toEqual([]);

    // Credentials only ever in headers.
    expect(urls.filter((u) => u.includes(ADMIN_KEY))).toEqual([]);
    expect(headers.length).toBeGreaterThan(3);
    for (const h of headers) expect(h['es-api-key']).toBe(ADMIN_KEY);

    await vms.getByRole('link', { name: 'web01' }).click();
    await w.page.waitForURL(`${s.url}/vm/web01`);
    await w.page.locator('table[data-testid="snapshots"] tbody tr').first().waitFor();
    await w.page.getByRole('table', { name: 'Snapshot definitions' }).waitFor();
    expect(await unlabelled(w.page)).toEqual([]);
    expect(w.problems).toEqual([]);
    await w.page.close();
  });

  it('works from the keyboard alone: sign in, open a VM, create a snapshot in the dialog, Escape closes dialogs', async () => {
    const w = await openPage(b, `${s.url}/`);
    const k = w.page.keyboard;
    // Tab order: username, password, its button, then the API key.
    await w.page.getByLabel('Username', { exact: true }).focus();
    await k.press('Tab');
    await k.press('Tab');
    await k.press('Tab');
    expect(await w.page.evaluate(() => document.activeElement?.getAttribute('name'))).toBe('api_key');
    await k.type(ADMIN_KEY);
    await k.press('Enter');
    const link = w.page.getByRole('link', { name: 'db01' });
    await link.waitFor();
    await link.focus();
    await k.press('Enter');
    await w.page.waitForURL(`${s.url}/vm/db01`);
    const create = w.page.getByRole('button', { name: 'Create snapshot' });
    await create.focus();
    await k.press('Enter');
    const dialog = w.page.getByRole('dialog', { name: 'Create snapshot' });
    await dialog.waitFor();
    expect(await unlabelled(w.page)).toEqual([]);
    // The dialog takes the focus; Escape closes it and gives the focus back.
    expect(await w.page.evaluate(() => document.activeElement?.closest('dialog') !== null)).toBe(true);
    await k.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    // Focus returns to the opener once the dialog has gone (an effect after unmount; give a loaded machine time).
    await w.page.waitForFunction(() => document.activeElement?.textContent === 'Create snapshot', undefined, { timeout: 5_000 }).catch(() => undefined);
    expect(await w.page.evaluate(() => document.activeElement?.textContent)).toBe('Create snapshot');
    await k.press('Enter');
    await dialog.getByLabel('Name', { exact: true }).waitFor();
    await k.type('kbd1');
    await k.press('Enter');
    await w.page.getByTestId('notice').getByText('Create snapshot kbd1: Snapshot successfully created').waitFor();
    expect(((await s.req('GET', '/api/vm/db01/snapshot/')).body.result as string[]).includes('kbd1')).toBe(true);
    expect(w.problems).toEqual([]);
    await w.page.close();
  });

  it('signs in with username and password (a token in a header), and signs out at the server', async () => {
    const r = await s.req('POST', '/api/accounts/user/carol/', { body: { password: 'carol-secret-pw-1', is_super_admin: true } });
    expect(r.status).toBe(201);
    const w = await openPage(b, `${s.url}/tasks`);
    let token = '';
    w.page.on('request', (req) => {
      const a = req.headers()['authorization'];
      if (a) token = a.replace(/^Token /, '');
    });
    await w.page.getByLabel('Username', { exact: true }).fill('carol');
    await w.page.getByLabel('Password', { exact: true }).fill('carol-secret-pw-1');
    await w.page.getByLabel('Password', { exact: true }).press('Enter');
    await w.page.getByRole('button', { name: 'Sign out' }).waitFor();
    // The deep link survives the sign-in.
    await w.page.getByRole('heading', { name: 'Task log' }).waitFor();
    expect(token).toMatch(/^\S{20,}$/);
    expect((await s.req('GET', '/api/vm/', { key: null, headers: { Authorization: `Token ${token}` } })).status).toBe(200);
    expect(await w.page.evaluate(() => JSON.stringify(sessionStorage))).toContain(token);

    await w.page.getByRole('button', { name: 'Sign out' }).click();
    await w.page.getByText('You are signed out.').waitFor();
    expect(await w.page.evaluate(() => sessionStorage.length)).toBe(0);
    expect((await s.req('GET', '/api/vm/', { key: null, headers: { Authorization: `Token ${token}` } })).status).toBe(403);
    expect(w.problems).toEqual([]);

    // A wrong password: the API's own message.
    await w.page.getByLabel('Username', { exact: true }).fill('carol');
    await w.page.getByLabel('Password', { exact: true }).fill('wrong');
    await w.page.getByRole('button', { name: 'Sign in', exact: true }).click();
    const api = await s.req('POST', '/api/accounts/login/', { key: null, body: { username: 'carol', password: 'wrong' } });
    await w.page.getByRole('alert').filter({ hasText: api.body.detail }).waitFor();
    await w.page.close();
  });

  it('a non-admin sees only their own VMs, and not the others even by URL', async () => {
    const w = await openPage(b, `${s.url}/`);
    await signInWithKey(w.page, bob.key);
    const vms = w.page.getByRole('table', { name: 'Virtual machines' });
    await vms.getByRole('link', { name: 'bobvm' }).waitFor();
    expect(await vms.locator('tbody tr').count()).toBe(1);
    expect(await w.page.locator('header').innerText()).not.toContain('admin');
    expect(w.problems).toEqual([]);
    await screenshot(w.page, 'overview-non-admin');

    await w.page.goto(`${s.url}/vm/web01`);
    await w.page.getByRole('alert').filter({ hasText: 'VM not found' }).waitFor();
    expect(w.problems).toEqual([`HTTP 404: GET ${s.url}/api/vm/web01/define/`, expect.stringContaining('404')]);
    await w.page.close();
  });
});
