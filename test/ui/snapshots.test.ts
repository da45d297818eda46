/**
 * The VM page's snapshot actions in a real browser against a real server: create (checks before
 * sending, all disks, a task seen pending and then ending live), note, pin, rollback with its
 * force choice and refusal while the VM runs, restore into another VM's disk, delete selected,
 * sync, and the table's filters, sorting, paging and footers.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { ensureUiBuilt, holdAgent, launchBrowser, openPage, row, screenshot, signInWithKey, unlabelled, type Browser, type WatchedPage } from './browser.js';

const MB = 1024 * 1024;

describe('web UI: snapshots of a VM', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  let b: Browser;
  let w: WatchedPage;
  let web01: VmFixture;
  let web02: VmFixture;

  const names = async (vm: string): Promise<string[]> =>
    ((await s.req('GET', `/api/vm/${vm}/snapshot/`, { query: { full: 'true' } })).body.result as { name: string; disk_id: number }[])
      .map((x) => `${x.name}@${x.disk_id}`)
      .sort();
  const notice = () => w.page.getByTestId('notice');
  const openVm = async (vm: string): Promise<void> => {
    await w.page.goto(`${s.url}/vm/${vm}`);
    await w.page.getByRole('heading', { name: 'Snapshots', exact: true }).waitFor();
  };

  beforeAll(async () => {
    ensureUiBuilt();
    s = await withServer('sqlite');
    b = await launchBrowser();
    web01 = await makeVm(s, 'web01', { disks: [4, 4], limits: { snapshot_limit_manual: 20 } });
    web02 = await makeVm(s, 'web02', { disks: [4] });
    await makeVm(s, 'run01', { disks: [4], status: 2 });
    w = await openPage(b, `${s.url}/vm/web01`);
    await signInWithKey(w.page);
    await w.page.getByRole('heading', { name: 'Snapshots', exact: true }).waitFor();
  });
  afterAll(async () => {
    await b?.close();
    await s?.cleanup();
  });

  it('creates a snapshot on all disks, shows it pending, and reports success only when the task ends, without a reload', async () => {
    const release = holdAgent(s);
    await w.page.evaluate(() => ((window as unknown as { __same: boolean }).__same = true));
    const posts: string[] = [];
    w.page.on('request', (r) => {
      if (r.method() === 'POST') posts.push(r.url());
    });

    await w.page.getByRole('button', { name: 'Create snapshot' }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Create snapshot' });
    await dialog.getByLabel('Name', { exact: true }).fill('bad name!');
    await dialog.getByRole('button', { name: 'Create' }).click();
    await dialog.getByText('Invalid value.').waitFor();
    await dialog.getByLabel('Name', { exact: true }).fill('x'.repeat(25));
    await dialog.getByRole('button', { name: 'Create' }).click();
    await dialog.getByText('Ensure this value has at most 24 characters (it has 25).').waitFor();
    expect(posts).toEqual([]);

    await dialog.getByLabel('Name', { exact: true }).fill('s1');
    await dialog.getByLabel(/All disks/).check();
    await dialog.getByLabel('Note', { exact: true }).fill('first one');
    await dialog.getByRole('button', { name: 'Create' }).click();
    await dialog.waitFor({ state: 'detached' });
    await row(w.page, 's1', 1, 'pending').waitFor();
    await row(w.page, 's1', 2, 'pending').waitFor();
    expect(await notice().innerText()).toContain('task accepted, running');
    expect(await notice().innerText()).not.toContain('successfully');
    expect(await row(w.page, 's1', 1).getByRole('checkbox').isDisabled()).toBe(true);
    await screenshot(w.page, 'vm-task-pending');

    release();
    await notice().getByText('Create snapshot s1: Snapshot successfully created').waitFor();
    await row(w.page, 's1', 1, 'ok').waitFor();
    await row(w.page, 's1', 2, 'ok').waitFor();
    expect(await w.page.evaluate(() => (window as unknown as { __same?: boolean }).__same)).toBe(true);
    expect(posts).toEqual([`${s.url}/api/vm/web01/snapshot/s1/`]);
    expect(await names('web01')).toEqual(['s1@1', 's1@2']);
    expect(await row(w.page, 's1', 1).innerText()).toContain('first one');
    expect(await w.page.getByTestId('manual-count').innerText()).toBe('Manual: 2 / 20');

    // The same name again on one disk: refused before sending.
    await w.page.getByRole('button', { name: 'Create snapshot' }).click();
    await dialog.getByLabel('Name', { exact: true }).fill('s1');
    await dialog.getByRole('button', { name: 'Create' }).click();
    await dialog.getByText('Snapshot name is already used').waitFor();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect(posts).toHaveLength(1);
    expect(w.problems).toEqual([]);
  });

  it('edits a note and pins and unpins, showing the API’s message for a bad note', async () => {
    const r = row(w.page, 's1', 1);
    await r.getByRole('button', { name: 'Edit note of s1 on disk 1' }).click();
    await r.getByLabel('Note for s1 on disk 1').fill('kept for audit');
    await r.getByRole('button', { name: 'Save' }).click();
    await r.getByText('kept for audit').waitFor();
    expect((await s.req('GET', '/api/vm/web01/snapshot/s1/')).body.result.note).toBe('kept for audit');

    await r.getByRole('button', { name: 'Edit note of s1 on disk 1' }).click();
    await r.getByLabel('Note for s1 on disk 1').fill('a<b');
    await r.getByRole('button', { name: 'Save' }).click();
    await r.getByRole('alert').filter({ hasText: 'note: Invalid value.' }).waitFor();
    expect(w.problems.some((p) => p.includes('HTTP 400'))).toBe(true);
    w.reset();
    await r.getByRole('button', { name: 'Cancel' }).click();

    await r.getByRole('button', { name: 'Pin s1 on disk 1' }).click();
    await r.getByRole('button', { name: 'Unpin s1 on disk 1' }).waitFor();
    expect(await r.innerText()).toContain('pinned');
    expect((await s.req('GET', '/api/vm/web01/snapshot/s1/')).body.result.pinned).toBe(true);
    await r.getByRole('button', { name: 'Unpin s1 on disk 1' }).click();
    await r.getByRole('button', { name: 'Pin s1 on disk 1' }).waitFor();
    expect((await s.req('GET', '/api/vm/web01/snapshot/s1/')).body.result.pinned).toBe(false);
    expect(w.problems).toEqual([]);
  });

  it('rolls back with the warning and the force choice, and refuses while the VM runs', async () => {
    const before = Buffer.alloc(4 * MB, 0);
    before.write('state of s1', 0);
    // s1 was taken of an empty disk; write, snapshot s2, write again.
    await writeFile(web01.diskPaths[0]!, Buffer.concat([Buffer.from('state of s2'), Buffer.alloc(4 * MB - 11)]));
    expect((await s.stream('POST', '/api/vm/web01/snapshot/s2/', { body: { disk_id: 1 } })).finalStatus).toBe(200);
    await writeFile(web01.diskPaths[0]!, Buffer.concat([Buffer.from('later data!'), Buffer.alloc(4 * MB - 11)]));
    await w.page.reload();
    await row(w.page, 's2', 1).waitFor();

    await row(w.page, 's1', 1).getByRole('button', { name: 'Roll back to s1 on disk 1' }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Roll back disk 1 to s1' });
    expect(await dialog.getByRole('note').innerText()).toContain('The server must be stopped and not locked');
    const force = dialog.getByLabel(/Force/);
    expect(await force.isChecked()).toBe(false);
    await dialog.getByRole('button', { name: 'Roll back' }).click();
    await dialog.getByRole('alert').filter({ hasText: 'VM has more recent snapshots' }).waitFor();
    await screenshot(w.page, 'vm-rollback-dialog');
    expect(await unlabelled(w.page)).toEqual([]);
    expect(w.problems).toEqual([`HTTP 417: PUT ${s.url}/api/vm/web01/snapshot/s1/`, expect.stringContaining('417')]);
    w.reset();
    await force.check();
    await dialog.getByRole('button', { name: 'Roll back' }).click();
    await notice().getByText('Rollback to s1: Snapshot successfully restored').waitFor();
    expect((await readFile(web01.diskPaths[0]!)).subarray(0, 11).equals(Buffer.alloc(11))).toBe(true);

    // The newest snapshot of a disk: no force choice.
    await row(w.page, 's2', 1).getByRole('button', { name: 'Roll back to s2 on disk 1' }).click();
    const d2 = w.page.getByRole('dialog', { name: 'Roll back disk 1 to s2' });
    expect(await d2.getByLabel(/Force/).count()).toBe(0);
    await d2.getByRole('button', { name: 'Roll back' }).click();
    await notice().getByText('Rollback to s2: Snapshot successfully restored').waitFor();
    expect((await readFile(web01.diskPaths[0]!)).subarray(0, 11).toString()).toBe('state of s2');
    expect(w.problems).toEqual([]);

    // A running VM: the rollback button is disabled with the reason (nothing to send).
    expect((await s.stream('POST', '/api/vm/run01/snapshot/r1/', { body: {} })).finalStatus).toBe(200);
    await openVm('run01');
    const r1 = row(w.page, 'r1', 1).getByRole('button', { name: /Roll back to r1 on disk 1/ });
    expect(await r1.isDisabled()).toBe(true);
    expect(await r1.getAttribute('data-reason')).toBe('The VM is running: stop it before a rollback');
    expect(w.problems).toEqual([]);
  });

  it('restores a snapshot into another VM’s disk', async () => {
    await openVm('web01');
    await row(w.page, 's2', 1).getByRole('button', { name: 'Restore s2 of disk 1 into another disk' }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Restore s2 into another server' });
    expect(await dialog.getByRole('note').first().innerText()).toContain('all data on the target disk is replaced');
    await dialog.getByLabel('Target server').selectOption('web02');
    await dialog.getByLabel('Target disk').locator('option').first().waitFor({ state: 'attached' });
    expect(await unlabelled(w.page)).toEqual([]);
    await dialog.getByRole('button', { name: 'Restore' }).click();
    await notice().getByText('Restore s2 into web02: Snapshot successfully restored').waitFor();
    expect((await readFile(web02.diskPaths[0]!)).subarray(0, 11).toString()).toBe('state of s2');
    expect(w.problems).toEqual([]);
  });

  it('deletes the selected snapshots across disks, and syncs', async () => {
    for (const [n, d] of [['x1', 1], ['x2', 1], ['y1', 2]] as const) {
      expect((await s.stream('POST', `/api/vm/web01/snapshot/${n}/`, { body: { disk_id: d } })).finalStatus).toBe(200);
    }
    await w.page.reload();
    await row(w.page, 'y1', 2).waitFor();
    await row(w.page, 'x1', 1).getByRole('checkbox', { name: 'Select x1 on disk 1' }).check();
    await row(w.page, 'x2', 1).getByRole('checkbox', { name: 'Select x2 on disk 1' }).check();
    await row(w.page, 'y1', 2).getByRole('checkbox', { name: 'Select y1 on disk 2' }).check();
    expect(await w.page.getByTestId('selected-count').innerText()).toBe('Selected 3 of 6');
    await w.page.getByRole('button', { name: 'Delete selected (3)' }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Delete 3 snapshots' });
    expect(await dialog.innerText()).toContain('disk 1: x1, x2; disk 2: y1');
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await row(w.page, 'y1', 2).waitFor({ state: 'detached' });
    await row(w.page, 'x1', 1).waitFor({ state: 'detached' });
    await row(w.page, 'x2', 1).waitFor({ state: 'detached' });
    expect(await names('web01')).toEqual(['s1@1', 's1@2', 's2@1']);

    await w.page.getByRole('button', { name: 'Sync with storage' }).click();
    await notice().getByText('Sync with storage: snapshots match the storage').waitFor();
    expect(w.problems).toEqual([]);
    await screenshot(w.page, 'vm-snapshots');
  });

  it('filters, sorts and pages the table, with footers', async () => {
    const db = s.runtime.ctx.db;
    const vm = await makeVm(s, 'many01', { disks: [4, 4] });
    const storage = await db.selectFrom('node_storage').select('id').executeTakeFirstOrThrow();
    const now = Date.now();
    const rows = Array.from({ length: 60 }, (_, i) => ({
      vm_uuid: vm.uuid,
      define_id: null,
      name: `n${String(i).padStart(2, '0')}`,
      type: i % 3 === 0 ? 1 : 2,
      status: 1,
      storage_id: storage.id,
      size: (i + 1) * 1024,
      note: '',
      fsfreeze: i === 5 ? 1 : 0,
      pinned: 0,
      disk_real_id: i % 2,
      status_change: null,
      created: new Date(now - (60 - i) * 60_000).toISOString(),
      changed: new Date(now).toISOString(),
    }));
    await db.insertInto('snapshot').values(rows).execute();
    await openVm('many01');
    const body = w.page.locator('table[data-testid="snapshots"] tbody tr');
    await body.first().waitFor();
    expect(await body.count()).toBe(50);
    expect(await w.page.getByText('Page 1 of 2').count()).toBe(1);
    expect(await body.first().getAttribute('data-name')).toBe('n59');
    expect(await w.page.getByTestId('auto-count').innerText()).toBe('Automatic: 20 / ∞');
    expect(await w.page.getByTestId('manual-count').innerText()).toBe('Manual: 40 / ∞');
    expect(await w.page.getByTestId('total-size').innerText()).toBe('Total size: 1.8 MiB');
    await w.page.getByRole('button', { name: 'Next page' }).click();
    expect(await body.count()).toBe(10);
    expect(await row(w.page, 'n05', 2).innerText()).toContain('frozen');
    expect(await row(w.page, 'n04', 1).innerText()).not.toContain('frozen');

    await w.page.getByLabel('Disk', { exact: true }).selectOption('2');
    await w.page.getByLabel('Type', { exact: true }).selectOption('1');
    expect(await body.count()).toBe(10);
    await w.page.getByRole('button', { name: /^Name/ }).click();
    expect(await w.page.getByRole('columnheader', { name: /^Name/ }).getAttribute('aria-sort')).toBe('ascending');
    expect(await body.evaluateAll((trs) => trs.map((t) => t.getAttribute('data-name')))).toEqual(['n03', 'n09', 'n15', 'n21', 'n27', 'n33', 'n39', 'n45', 'n51', 'n57']);
    await w.page.getByRole('button', { name: /^Size/ }).click();
    await w.page.getByRole('button', { name: /^Size/ }).click();
    expect(await body.first().getAttribute('data-name')).toBe('n57');
    expect(w.problems).toEqual([]);
  });
});
