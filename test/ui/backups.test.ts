/**
 * The Backups page in a real browser, on an embedded server with restic (a file storage `backup`
 * on the local node): the definitions and backups of every VM and of one (status ok, damaged,
 * lost, a deleted VM's), the overview's backup problems linking there; verify and restore (into a
 * stopped VM's disk: the bytes arrive), note editing, and delete, destructive actions red and confirmed, actions
 * that cannot succeed disabled with their reason; axe-core, 400 px, the keyboard.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';
import { axeViolations, ensureUiBuilt, launchBrowser, openPage, screenshot, scrollsSideways, signInWithKey, unlabelled, type Browser, type WatchedPage } from './browser.js';

const sha = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex');

describe('web UI: backups page', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('the backups page drives real restic backups', reason);

  let s: TestServer & { cleanup(): Promise<void> };
  let b: Browser;
  let w: WatchedPage;
  let web01: VmFixture;
  let tgt01: VmFixture;
  let okName = '';
  const db = () => s.runtime.ctx.db;
  const backupRow = (name: string) => w.page.locator(`table[data-testid="backups"] tbody tr[data-name="${name}"]`);
  const notice = () => w.page.getByTestId('notice');

  /** A backup row written directly (lost and damaged ones cannot be made on purpose through the API). */
  const insertBackup = async (name: string, status: number, vm: { uuid: string | null; hostname: string }): Promise<void> => {
    const st = await db().selectFrom('node_storage').select(['id', 'node_id']).where('name', '=', 'backup').executeTakeFirstOrThrow();
    const at = new Date(Date.now() - 3600_000).toISOString();
    await db()
      .insertInto('backup')
      .values({
        dc_id: 1, vm_uuid: vm.uuid, vm_hostname: vm.hostname, vm_disk_id: 1, disk_real_id: 0, disk_size_mb: 4, define_id: null, name, status, type: 2,
        node_id: st.node_id, node_hostname: s.node, storage_id: st.id, storage_name: 'backup', storage_driver: 'file', source_node_hostname: s.node, source_storage_name: 'default',
        source_storage_driver: 'file', file_path: 'bkp-0.raw', restic_id: null, base_snapshot: null, checksum: '00', size: 4 * 1024 * 1024, time: 3, note: `${name} note`, last: 0, fsfreeze: 0,
        task_id: null, status_change: at, created: at, changed: at,
      })
      .execute();
  };

  beforeAll(async () => {
    ensureUiBuilt();
    s = await withServer('sqlite', {
      storages: (root) => [
        { name: 'default', driver: 'file', root: join(root, 'storage') },
        { name: 'backup', driver: 'file', root: join(root, 'backup') },
      ],
    });
    web01 = await makeVm(s, 'web01', { disks: [4] });
    tgt01 = await makeVm(s, 'tgt01', { disks: [4] });
    await makeVm(s, 'run01', { disks: [4], status: 2 });
    await writeFile(web01.diskPaths[0]!, randomBytes(4 * 1024 * 1024));
    const def = await s.req('POST', '/api/vm/web01/define/backup/daily', { body: { type: 2, node: s.node, zpool: 'backup', schedule: '0 2 * * *', retention: 5 } });
    expect(def.status, def.text).toBe(201);
    const made = await s.stream('POST', '/api/vm/web01/backup/daily', { body: { note: 'before the upgrade' } });
    expect(made.finalStatus, JSON.stringify(made.final)).toBe(200);
    okName = ((await s.req('GET', '/api/vm/web01/backup')).body.result as string[])[0]!;
    await insertBackup('daily-20261201_020000', 5, { uuid: web01.uuid, hostname: 'web01' });
    await insertBackup('daily-20261130_020000', 4, { uuid: web01.uuid, hostname: 'web01' });
    await insertBackup('old-20261101_020000', 1, { uuid: null, hostname: 'gone01' });
    // Last night's run of the definition failed.
    await db().updateTable('backup_define').set({ last_error: 'Backup storage is full' }).execute();
    b = await launchBrowser();
    w = await openPage(b, `${s.url}/`);
    await signInWithKey(w.page);
  }, 120_000);
  afterAll(async () => {
    await b?.close();
    await s?.cleanup();
  });

  it('the overview links backup problems to the backups page of the VM', async () => {
    const problem = w.page.locator('[data-testid="problems"] li[data-kind="backup_damaged"]');
    await problem.waitFor();
    await problem.getByRole('link', { name: 'Open the backups of web01' }).click();
    await w.page.getByRole('heading', { name: 'Backups of web01' }).waitFor();
    expect(new URL(w.page.url()).pathname).toBe('/backups/web01');
    await backupRow(okName).waitFor();
    // One VM's page: its backups only, without a VM column.
    expect(await w.page.locator('table[data-testid="backups"] tbody tr[data-name]').count()).toBe(3);
    expect(await w.page.locator('table[data-testid="backups"] thead th').allInnerTexts()).toEqual(['Name', 'Disk', 'Definition', 'Status', 'Size', 'Node', 'Storage', 'Created', 'Took', 'Note', 'Actions']);
    expect(w.problems).toEqual([]);
  });

  it('lists every VM’s definitions and backups with status, size, node, storage, time and note', async () => {
    expect((await s.req('PUT', '/api/vm/web01/define/backup/daily', { body: { catchup: false } })).status).toBe(200);
    await w.page.getByRole('link', { name: 'Backups', exact: true }).first().click();
    await w.page.getByRole('heading', { name: 'Backups of all VMs' }).waitFor();
    await backupRow('old-20261101_020000').waitFor();
    const ok = await backupRow(okName).innerText();
    for (const text of ['web01', 'daily', 'ok', '4.0 MiB', s.node, 'backup', 'before the upgrade']) expect(ok).toContain(text);
    expect(await backupRow(okName).getAttribute('data-status')).toBe('ok');
    expect(await backupRow('daily-20261201_020000').getAttribute('data-status')).toBe('damaged');
    expect(await backupRow('daily-20261130_020000').getAttribute('data-status')).toBe('lost');
    expect(await backupRow('old-20261101_020000').innerText()).toContain('gone01 (VM deleted)');
    const def = w.page.locator('table[data-testid="backup-definitions"] tbody tr[data-name="daily"]');
    expect(await def.innerText()).toContain('every day at 02:00 (UTC)');
    expect(await def.innerText()).toContain('no catch-up');
    expect(await def.getByTestId('bkpdef-failed').innerText()).toContain('Backup storage is full');
    expect(await unlabelled(w.page)).toEqual([]);
    expect(await axeViolations(w.page)).toEqual([]);
    await screenshot(w.page, 'backups-all');
    expect(w.problems).toEqual([]);
  });

  it('disables what cannot succeed, with the reason; destructive actions are red, never primary', async () => {
    const btn = (name: string, label: string) => backupRow(name).locator('td.actions button', { hasText: label });
    expect(await btn('daily-20261201_020000', 'Restore').isDisabled()).toBe(true);
    expect(await btn('daily-20261201_020000', 'Restore').getAttribute('data-reason')).toMatch(/damaged/);
    expect(await btn('daily-20261201_020000', 'Verify').isEnabled()).toBe(true);
    for (const label of ['Verify', 'Restore']) {
      expect(await btn('daily-20261130_020000', label).isDisabled()).toBe(true);
      expect(await btn('daily-20261130_020000', label).getAttribute('data-reason')).toMatch(/lost/);
    }
    expect(await btn('daily-20261130_020000', 'Delete').isEnabled()).toBe(true);
    for (const label of ['Restore', 'Delete']) expect(await btn(okName, label).getAttribute('class')).toBe('danger');
    expect(await btn(okName, 'Verify').getAttribute('class')).toBeNull();
    // The tooltip is on the disabled button's wrapper (a disabled button gets no hover).
    expect(await btn('daily-20261201_020000', 'Restore').locator('xpath=..').getAttribute('title')).toMatch(/damaged/);
  });

  it('edits a backup’s note from the keyboard: one notice, kept after a reload; Escape cancels, a bad note is refused in place', async () => {
    const what = `backup ${okName} of web01, disk 1`;
    const edit = backupRow(okName).getByRole('button', { name: `Edit note of ${what}` });
    const field = backupRow(okName).getByLabel(`Note for ${what}`);
    const focused = (l: typeof edit) => l.evaluate((el) => el === document.activeElement);
    await edit.focus();
    await w.page.keyboard.press('Enter');
    await field.waitFor();
    expect(await focused(field)).toBe(true);
    expect(await axeViolations(w.page)).toEqual([]);
    await w.page.keyboard.press('Escape');
    await edit.waitFor();
    expect(await focused(edit)).toBe(true);
    expect((await s.req('GET', `/api/vm/web01/backup/${okName}`)).body.result.note).toBe('before the upgrade');

    await w.page.keyboard.press('Enter');
    await field.fill('a<b');
    await w.page.keyboard.press('Enter');
    await backupRow(okName).getByRole('alert').filter({ hasText: 'note: Invalid value.' }).waitFor();
    expect(w.problems.some((p) => p.includes('HTTP 400'))).toBe(true);
    w.reset();

    await field.fill('kept for the audit');
    await w.page.keyboard.press('Enter');
    await notice().and(w.page.locator('[data-kind="ok"]')).waitFor();
    expect(await notice().innerText()).toContain(`Note of ${okName}: saved`);
    expect(await w.page.getByTestId('notice').count()).toBe(1);
    await edit.waitFor();
    expect((await s.req('GET', `/api/vm/web01/backup/${okName}`)).body.result.note).toBe('kept for the audit');
    await w.page.reload();
    await backupRow(okName).getByText('kept for the audit').waitFor();
    expect(w.problems).toEqual([]);
  });

  it('verifies a backup: one notice with the outcome', async () => {
    await backupRow(okName).getByRole('button', { name: `Verify backup ${okName}` }).click();
    await notice().and(w.page.locator('[data-kind="ok"]')).waitFor({ timeout: 60_000 });
    expect(await notice().innerText()).toContain(`Verify ${okName}`);
    expect(await backupRow(okName).getAttribute('data-status')).toBe('ok');
    expect(w.problems).toEqual([]);
  });

  it('restores into a stopped VM: running ones cannot be chosen, the dialog warns, the bytes arrive', async () => {
    await backupRow(okName).getByRole('button', { name: `Restore backup ${okName}` }).click();
    const dialog = w.page.getByRole('dialog', { name: `Restore backup ${okName}` });
    await dialog.getByText('all data on the target disk is replaced').waitFor();
    const target = dialog.getByLabel('Target VM');
    await target.locator('option[value="tgt01"]').waitFor({ state: 'attached' });
    expect(await target.locator('option[value="run01"]').isDisabled()).toBe(true);
    expect(await target.locator('option[value="run01"]').innerText()).toContain('stop it first');
    await target.selectOption('tgt01');
    await dialog.getByLabel('Target disk').locator('option[value="1"]').waitFor({ state: 'attached' });
    expect(await dialog.getByRole('button', { name: 'Restore' }).getAttribute('class')).toBe('danger');
    expect(await axeViolations(w.page)).toEqual([]);
    await screenshot(w.page, 'backups-restore-dialog');
    await dialog.getByRole('button', { name: 'Restore' }).click();
    await dialog.waitFor({ state: 'detached' });
    await notice().and(w.page.locator('[data-kind="ok"]')).waitFor({ timeout: 60_000 });
    expect(await notice().innerText()).toContain('Backup successfully restored');
    expect(await sha(tgt01.diskPaths[0]!)).toBe(await sha(web01.diskPaths[0]!));
    expect(w.problems).toEqual([]);
  });

  it('deletes after a confirmation; Escape cancels from the keyboard', async () => {
    const lost = 'daily-20261130_020000';
    const del = backupRow(lost).locator('td.actions button', { hasText: 'Delete' });
    await del.focus();
    await w.page.keyboard.press('Enter');
    const dialog = w.page.getByRole('dialog', { name: `Delete backup ${lost}` });
    await dialog.getByText('only its entry is removed').waitFor();
    await w.page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    expect(await backupRow(lost).count()).toBe(1);
    await del.click();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await backupRow(lost).waitFor({ state: 'detached' });
    expect((await s.req('GET', '/api/vm/web01/backup')).body.result).not.toContain(lost);
    expect(w.problems).toEqual([]);
  });

  it("marks a backup definition's failed and skipped scheduled runs in the VM's timeline, in its backup lane", async () => {
    const def = await db().selectFrom('backup_define').select('id').executeTakeFirstOrThrow();
    const at = (h: number): string => new Date(Math.floor(Date.now() / 3600_000) * 3600_000 - h * 3600_000).toISOString();
    await db().insertInto('backup_slot').values([
      { define_id: def.id, slot: at(5), source: 'cron', state: 'failed', reason: 'Backup storage is full', created: at(5), changed: at(5) },
      { define_id: def.id, slot: at(4), source: 'cron', state: 'skipped', reason: 'overlap', created: at(4), changed: at(4) },
      { define_id: def.id, slot: at(3), source: 'cron', state: 'fired', reason: null, created: at(3), changed: at(3) },
    ]).execute();
    await w.page.goto(`${s.url}/vm/web01`);
    const lane = w.page.getByTestId('timeline').locator('g[data-lane="1/backup daily"]');
    await lane.waitFor();
    expect(await lane.locator('line[data-run="failed"]').count()).toBe(1);
    expect(await lane.locator('line[data-run="failed"] title').textContent()).toContain('Backup storage is full');
    expect(await lane.locator('line[data-run="skipped"]').count()).toBe(1);
    expect(await lane.locator('rect[data-backup-status]').count()).toBeGreaterThan(0);
    await screenshot(w.page, 'backups-timeline');
    expect(w.problems).toEqual([]);
  });

  it('fits 400 px without sideways scrolling; axe-core finds nothing serious', async () => {
    await w.page.setViewportSize({ width: 400, height: 800 });
    try {
      await w.page.goto(`${s.url}/backups/web01`);
      await backupRow(okName).waitFor();
      expect(await scrollsSideways(w.page)).toBe(false);
      expect(await axeViolations(w.page)).toEqual([]);
      await screenshot(w.page, 'backups-400px');
    } finally {
      await w.page.setViewportSize({ width: 1400, height: 900 });
    }
  });
});
