/**
 * Snapshot definitions and tasks in a real browser: add with Danube's preset defaults, add with
 * the live preview of the next runs, edit with the server's preview of what retention would
 * delete, pause/resume, run now, delete; the Tasks page following a task it did not start.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';
import { ensureUiBuilt, holdAgent, launchBrowser, openPage, screenshot, signInWithKey, unlabelled, type Browser, type WatchedPage } from './browser.js';

interface Def {
  name: string;
  schedule: string;
  retention: number;
  tz: string;
  active: boolean;
}

describe('web UI: snapshot definitions and tasks', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  let b: Browser;
  let w: WatchedPage;

  const defs = async (): Promise<Def[]> => (await s.req('GET', '/api/vm/web01/define/snapshot/', { query: { full: 'true' } })).body.result as Def[];
  const defRow = (name: string) => w.page.locator(`table[data-testid="definitions"] tbody tr[data-name="${name}"]`);
  const notice = () => w.page.getByTestId('notice');

  beforeAll(async () => {
    ensureUiBuilt();
    s = await withServer('sqlite');
    b = await launchBrowser();
    await makeVm(s, 'web01', { disks: [4] });
    w = await openPage(b, `${s.url}/vm/web01`);
    await signInWithKey(w.page);
    await w.page.getByRole('heading', { name: 'Snapshot definitions' }).waitFor();
  });
  afterAll(async () => {
    await b?.close();
    await s?.cleanup();
  });

  it('adds a predefined definition: the server fills in Danube’s defaults', async () => {
    await w.page.getByRole('button', { name: 'Add definition' }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Add snapshot definition' });
    await dialog.getByLabel('Name', { exact: true }).fill('daily');
    await dialog.getByText('Predefined: every day at a random time, keep 30').waitFor();
    await dialog.getByText('No schedule: a predefined name gets its default from the server.').waitFor();
    await dialog.getByRole('button', { name: 'Add' }).click();
    await defRow('daily').waitFor();
    const [d] = await defs();
    expect(d).toMatchObject({ name: 'daily', retention: 30, tz: 'UTC', active: true });
    expect(d!.schedule).toMatch(/^\d{1,2} \d{1,2} \* \* \*$/);
    expect(await defRow('daily').innerText()).toContain(d!.schedule);
    expect(await defRow('daily').innerText()).toContain('keep 30');
    expect(w.problems).toEqual([]);
  });

  it('adds a definition while the schedule field shows the next five runs in UTC and in the zone', async () => {
    await w.page.getByRole('button', { name: 'Add definition' }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Add snapshot definition' });
    await dialog.getByLabel('Name', { exact: true }).fill('nightly');
    const schedule = dialog.getByLabel(/^Schedule/);
    await schedule.fill('0 3 * *');
    await dialog.getByRole('alert').filter({ hasText: 'Entry has to consist of exactly 5 columns.' }).waitFor();
    await schedule.fill('0 3 * * *');
    await dialog.getByLabel('Time zone').fill('Europe/Bratislava');
    const runs = dialog.locator('[data-testid="next-runs"] tbody tr');
    await dialog.locator('[data-testid="next-runs"] th', { hasText: 'Europe/Bratislava' }).waitFor();
    expect(await runs.count()).toBe(5);
    for (const text of await runs.allInnerTexts()) {
      // 03:00 in Bratislava is 01:00 or 02:00 UTC, depending on the season.
      expect(text).toMatch(/^\d{4}-\d\d-\d\d 0[12]:00:00 UTC\t\d{4}-\d\d-\d\d 03:00 GMT\+0[12]:00$/);
    }
    await dialog.getByLabel(/^Retention \(/).fill('2');
    expect(await unlabelled(w.page)).toEqual([]);
    await screenshot(w.page, 'definition-add-preview');
    await dialog.getByRole('button', { name: 'Add' }).click();
    await defRow('nightly').waitFor();
    expect((await defs()).find((d) => d.name === 'nightly')).toMatchObject({ schedule: '0 3 * * *', tz: 'Europe/Bratislava', retention: 2 });
    expect(w.problems).toEqual([]);
  });

  it('edits a definition with the server’s preview of runs and of what retention would delete', async () => {
    // Three automatic snapshots of `nightly`.
    const db = s.runtime.ctx.db;
    const def = await db.selectFrom('snapshot_define').select('id').where('name', '=', 'nightly').executeTakeFirstOrThrow();
    for (const n of ['nightly-1', 'nightly-2', 'nightly-3']) {
      expect((await s.stream('POST', `/api/vm/web01/snapshot/${n}/`, { body: {} })).finalStatus).toBe(200);
    }
    await db.updateTable('snapshot').set({ type: 1, define_id: def.id }).where('name', 'like', 'nightly-%').execute();
    await w.page.reload();
    await defRow('nightly').getByRole('button', { name: 'Edit definition nightly' }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Edit definition nightly' });
    expect(await dialog.getByLabel('Name', { exact: true }).getAttribute('readonly')).not.toBeNull();
    const prune = dialog.getByTestId('prune-preview');
    await prune.getByText('Retention would delete now (1): nightly-1').waitFor();
    await dialog.getByLabel(/^Retention \(/).fill('1');
    await prune.getByText('Retention would delete now (2): nightly-1, nightly-2').waitFor();
    await dialog.getByLabel(/^Schedule/).fill('30 */6 * * *');
    await dialog.getByLabel('Time zone').fill('UTC');
    await dialog.locator('[data-testid="next-runs"] caption', { hasText: /^Next 5 runs$/ }).waitFor();
    const api = await s.req('GET', '/api/vm/web01/define/snapshot/nightly/preview/', { query: { schedule: '30 */6 * * *', tz: 'UTC', retention: '1' } });
    expect(api.status).toBe(200);
    const cells = await dialog.locator('[data-testid="next-runs"] tbody tr td:first-child').allInnerTexts();
    expect(cells).toEqual((api.body.result.next_runs as { utc: string }[]).map((r) => `${r.utc.slice(0, 19).replace('T', ' ')} UTC`));
    await screenshot(w.page, 'definition-edit-preview');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect((await defs()).find((d) => d.name === 'nightly')).toMatchObject({ schedule: '30 */6 * * *', tz: 'UTC', retention: 1 });
    await defRow('nightly').getByText('keep 1').waitFor();
    expect(w.problems).toEqual([]);
  });

  it('pauses and resumes, runs now (with retention after it), and deletes', async () => {
    await defRow('daily').getByRole('button', { name: 'Pause definition daily' }).click();
    await defRow('daily').getByText('paused').waitFor();
    expect((await defs()).find((d) => d.name === 'daily')!.active).toBe(false);
    await defRow('daily').getByRole('button', { name: 'Resume definition daily' }).click();
    await defRow('daily').getByText('active').waitFor();
    expect((await defs()).find((d) => d.name === 'daily')!.active).toBe(true);

    await defRow('nightly').getByRole('button', { name: 'Run now: definition nightly' }).click();
    await notice().getByText('Run nightly now: Snapshot successfully created').waitFor();
    const made = w.page.locator('table[data-testid="snapshots"] tbody tr[data-name^="nightly-2"]');
    await made.first().waitFor();
    expect(await made.first().innerText()).toMatch(/automatic · nightly/);
    // Retention 1 keeps only the new one: the older three go in the prune task after it.
    await expect
      .poll(async () => ((await s.req('GET', '/api/vm/web01/snapshot/', { query: { define: 'nightly' } })).body.result as string[]).length, { timeout: 10_000 })
      .toBe(1);

    await defRow('daily').getByRole('button', { name: 'Delete definition daily' }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Delete definition daily' });
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await defRow('daily').waitFor({ state: 'detached' });
    expect((await defs()).map((d) => d.name)).toEqual(['nightly']);
    expect(w.problems).toEqual([]);
    await screenshot(w.page, 'vm-definitions');
  });

  it('follows a task started elsewhere on the Tasks page until it ends, and filters the log', async () => {
    const release = holdAgent(s);
    const started = await s.req('POST', '/api/vm/web01/snapshot/elsewhere/', { body: {} });
    expect(started.status).toBe(201);
    await w.page.getByRole('link', { name: 'Tasks' }).click();
    const running = w.page.getByTestId('running');
    await running.getByText('vm_snapshot · POST · web01 · elsewhere · disk 1').waitFor();
    await screenshot(w.page, 'tasks');
    release();
    await w.page.getByText('No task is running.').waitFor();
    const log = w.page.getByTestId('task-log');
    // Two rows per task, as Danube: PENDING with the request's detail, then SUCCESS with the result's.
    await log.locator('tbody tr', { hasText: "Create snapshot of server's disk" }).filter({ hasText: 'elsewhere' }).filter({ hasText: 'PENDING' }).first().waitFor();
    await log.locator('tbody tr', { hasText: "Create snapshot of server's disk" }).filter({ hasText: 'SUCCESS' }).first().waitFor();

    await w.page.getByLabel('Status').selectOption('FAILURE');
    await w.page.getByRole('button', { name: 'Apply filters' }).click();
    await log.getByText('No entries.').waitFor();
    await w.page.getByLabel('Status').selectOption('');
    await w.page.getByLabel('Object name').fill('web01');
    await w.page.getByLabel(/Hide automatic/).check();
    await w.page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(async () => (await log.locator('tbody tr').allInnerTexts()).some((t) => t.includes('Create server snapshot definition'))).toBe(true);
    expect(w.problems).toEqual([]);
  });
});
