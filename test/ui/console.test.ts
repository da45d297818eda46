/**
 * The UI as an operations console (issue 16), in Chromium against a real server: after a night in
 * which one definition failed, one snapshot was lost (found by a sync from the UI) and a storage
 * filled up, the overview shows all three first, each linking to where to act; destructive actions
 * are red and disabled with their reason when they cannot succeed; the rollback dialog says what
 * happens to newer snapshots on this storage; one toast per action; the task log, timeline,
 * schedules in words, sign-in, 400 px, axe-core and the keyboard. Screenshots go to a temp folder.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';
import { axeViolations, emojiIn, ensureUiBuilt, launchBrowser, openPage, row, screenshot, scrollsSideways, signInWithKey, type Browser, type WatchedPage } from './browser.js';

const HOUR = 3_600_000;

describe('web UI: operations console', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  let b: Browser;
  let w: WatchedPage;
  const db = () => s.runtime.ctx.db;
  const vmUuid = (h: string) => db().selectFrom('vm').select('uuid').where('hostname', '=', h);
  const fillStorage = async (): Promise<void> => {
    await db().updateTable('node_storage').set({ size: 100 * 1024 ** 3, size_free: 2 * 1024 ** 3 }).execute();
  };

  beforeAll(async () => {
    ensureUiBuilt();
    s = await withServer('sqlite');
    b = await launchBrowser();
    await makeVm(s, 'web01', { disks: [4] });
    await makeVm(s, 'db01', { disks: [4] });
    await makeVm(s, 'run01', { disks: [4], status: 2 });
    for (const name of ['s1', 's2', 's3']) expect((await s.stream('POST', `/api/vm/web01/snapshot/${name}/`, { body: {} })).finalStatus).toBe(200);
    expect((await s.stream('POST', '/api/vm/run01/snapshot/r1/', { body: {} })).finalStatus).toBe(200);
    expect((await s.req('POST', '/api/vm/db01/define/snapshot/nightly/', { body: { schedule: '30 5 * * *', tz: 'Europe/Bratislava', retention: 3 } })).status).toBe(201);
    expect((await s.req('POST', '/api/vm/web01/define/snapshot/hourly/', { body: { schedule: '0 * * * *', retention: 3 } })).status).toBe(201);
    const recent = new Date(Date.now() - 10 * 60_000).toISOString();
    // Last night: db01's definition failed; web01's ran fine but one slot was skipped and one failed.
    await db().updateTable('snapshot_define').set({ last_success: recent, created: new Date(Date.now() - 3 * 24 * HOUR).toISOString() }).execute();
    await db().updateTable('snapshot_define').set({ last_error: 'Got bad return code (1)' }).where('vm_uuid', 'in', vmUuid('db01')).execute();
    const hourly = await db().selectFrom('snapshot_define').select('id').where('vm_uuid', 'in', vmUuid('web01')).executeTakeFirstOrThrow();
    for (const [h, state] of [[5, 'skipped'], [3, 'failed']] as const) {
      await db().insertInto('schedule_slot').values({ define_id: hourly.id, slot: new Date(Date.now() - h * HOUR).toISOString(), source: 'cron', state, reason: state === 'skipped' ? 'capacity' : 'Got bad return code (1)', created: recent, changed: recent }).execute();
    }
    // old01: a definition that stopped succeeding 10 hours ago (stale), and one that never fires (written
    // before esnap refused such schedules); and a node that stopped answering.
    await makeVm(s, 'old01', { disks: [4] });
    expect((await s.req('POST', '/api/vm/old01/define/snapshot/hourly/', { body: { schedule: '0 * * * *', retention: 3 } })).status).toBe(201);
    await db().updateTable('snapshot_define').set({ next_run: new Date(Date.now() + 24 * HOUR).toISOString(), last_success: new Date(Date.now() - 10 * HOUR).toISOString(), created: new Date(Date.now() - 3 * 24 * HOUR).toISOString() }).where('vm_uuid', 'in', vmUuid('old01')).execute();
    const { id: _id, ...stale } = await db().selectFrom('snapshot_define').selectAll().where('vm_uuid', 'in', vmUuid('old01')).executeTakeFirstOrThrow();
    await db().insertInto('snapshot_define').values({ ...stale, name: 'leapday', schedule: '0 0 30 2 *', last_success: null }).execute();
    await db().insertInto('node').values({ hostname: 'down01.test', uuid: '00000000-0000-4000-8000-00000000d0d1', status: 3, last_heartbeat: new Date(Date.now() - 2 * HOUR).toISOString(), created: recent }).execute();
    // One of web01's backups is gone from the backup storage.
    const local = await db().selectFrom('node_storage').select(['id', 'name', 'node_id']).executeTakeFirstOrThrow();
    const web = await db().selectFrom('vm').select('uuid').where('hostname', '=', 'web01').executeTakeFirstOrThrow();
    await db().insertInto('backup').values({
      dc_id: 1, vm_uuid: web.uuid, vm_hostname: 'web01', vm_disk_id: 1, disk_real_id: 0, disk_size_mb: 4, define_id: null, name: 'daily-20261205_010000', status: 4, type: 2,
      node_id: local.node_id, node_hostname: s.node, storage_id: local.id, storage_name: local.name, storage_driver: 'file', source_node_hostname: s.node, source_storage_name: local.name,
      source_storage_driver: 'file', file_path: '/backups/web01', restic_id: null, base_snapshot: null, checksum: 'sha256:00', size: 1, time: 1, note: '', last: 0, fsfreeze: 0,
      task_id: null, status_change: recent, created: recent, changed: recent,
    }).execute();
    await db().updateTable('snapshot').set({ pinned: 1 }).where('name', '=', 's3').execute();
    await db()
      .insertInto('task_log')
      .values({
        time: recent, task_id: '1e1-6f1e7a4b-0001', task_type: 'e', status: 'FAILURE', user_id: 1, username: 'admin', owner_id: 1, dc_id: 1,
        msg: 'Create snapshot', detail: "snapname='x1', disk_id=1, msg='Got bad return code (1)'", object_type: 'vm', object_name: 'db01', object_alias: 'db01', object_pk: '', flag: 0,
      })
      .execute();
    w = await openPage(b, `${s.url}/`);
    await signInWithKey(w.page);
  });
  afterAll(async () => {
    await b?.close();
    await s?.cleanup();
  });

  it('a sync that loses a snapshot is one amber toast, dismissable, not following to other pages', async () => {
    // The image of s2 vanished from storage overnight.
    // (the file driver keeps each snapshot as an image plus a `<id>.json` side-car naming it).
    const snapDir = join(s.storageRoot, 'storage', '.snapshots');
    const files = (await readdir(snapDir, { recursive: true })).map(String).filter((f) => f.endsWith('.json'));
    const sidecar = [];
    for (const f of files) if ((JSON.parse(await readFile(join(snapDir, f), 'utf8')) as { name: string }).name === 's2') sidecar.push(f);
    expect(sidecar).toHaveLength(1);
    await rm(join(snapDir, sidecar[0]!.replace(/\.json$/, '')));
    await rm(join(snapDir, sidecar[0]!));

    await w.page.goto(`${s.url}/vm/web01`);
    await w.page.getByRole('button', { name: 'Sync with storage' }).click();
    const toast = w.page.getByTestId('notice');
    await toast.getByText('Sync with storage: 1 snapshot lost on disk 1').waitFor();
    expect(await toast.getAttribute('data-kind')).toBe('warn');
    expect(await w.page.locator('.toast').count()).toBe(1);
    await row(w.page, 's2', 1, 'lost').waitFor();
    await screenshot(w.page, 'console-toast-sync-lost');
    await toast.getByRole('button', { name: 'Dismiss the notice' }).click();
    expect(await w.page.locator('.toast').count()).toBe(0);

    await w.page.getByRole('button', { name: 'Sync with storage' }).click();
    await toast.getByText('Sync with storage: snapshots match the storage').waitFor();
    expect(await toast.getAttribute('data-kind')).toBe('ok');
    await w.page.getByRole('link', { name: 'Overview' }).first().click();
    await w.page.locator('main[data-ready="overview"]').waitFor();
    expect(await w.page.locator('.toast').count()).toBe(0);
    expect(w.problems).toEqual([]);
  });

  it('shows the failed definition, the lost snapshot and the full storage first, each linking to where to act', async () => {
    await fillStorage();
    // The first request starts before the app's script runs (early.js) and the app takes its answer: two requests in all.
    const asked: string[] = [];
    const onRequest = (r: { url(): string }): void => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/api/overview/')) asked.push(`${u.pathname}${u.search}`);
    };
    w.page.on('request', onRequest);
    await w.page.goto(`${s.url}/`);
    await w.page.locator('main[data-ready="overview"]').waitFor();
    await w.page.locator('section[data-charts="ready"]').waitFor();
    w.page.off('request', onRequest);
    expect(asked).toEqual(['/api/overview/?days=0&limit=100&offset=0', '/api/overview/node/?days=30']);
    expect(await w.page.locator('header .who').innerText()).toBe('admin in DC main');
    // The problems panel is the first thing under the heading.
    expect(await w.page.locator('main > section').first().getAttribute('data-testid')).toBe('problems');
    const problems = w.page.getByTestId('problems');
    expect(await problems.locator('li[data-kind="definition_failing"]').innerText()).toContain('Definition nightly of db01 (disk 1) failed: Got bad return code (1)');
    expect(await problems.locator('li[data-kind="snapshot_lost"]').innerText()).toContain('1 snapshot of web01 lost');
    expect(await problems.locator('li[data-kind="storage_low"]').innerText()).toContain('2.0 % free, below the 5 % floor');
    expect(await problems.locator('li[data-kind="definition_stale"]').innerText()).toMatch(/Definition hourly of old01 \(disk 1\) is stale: no successful snapshot since \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    expect(await problems.locator('li[data-kind="schedule_invalid"]').innerText()).toContain('Definition leapday of old01 (disk 1) has a schedule that never fires: 0 0 30 2 *');
    const down = problems.locator('li[data-kind="node_unreachable"]');
    expect(await down.innerText()).toContain('Node down01.test is');
    expect(await down.getByRole('link', { name: 'Show node down01.test' }).getAttribute('href')).toBe('#node-down01.test');
    expect(await w.page.locator('article[data-node="down01.test"] h3 .badge').getAttribute('class')).toBe('badge badge-bad');
    const backup = problems.locator('li[data-kind="backup_lost"]');
    expect(await backup.innerText()).toContain('1 backup of web01 lost (gone from the backup storage)');
    expect(await backup.getByRole('link', { name: 'Open the backups of web01' }).getAttribute('href')).toBe('/backups/web01');
    // Every problem is worded, marked and links somewhere.
    expect(await problems.locator('li').count()).toBe(7);
    expect(await problems.locator('li a[href]').count()).toBe(7);
    const vms = w.page.getByRole('table', { name: 'Virtual machines' });
    expect(await vms.locator('tr[data-vm="db01"]').getAttribute('data-protection')).toBe('failing');
    expect(await vms.locator('tr[data-vm="web01"]').getAttribute('data-protection')).toBe('ok');
    expect(await vms.locator('tr[data-vm="run01"]').getAttribute('data-protection')).toBe('none');
    expect(await vms.locator('tr[data-vm="old01"]').getAttribute('data-protection')).toBe('failing');
    expect(await vms.locator('tr[data-vm="web01"]').innerText()).toContain('(1 lost)');
    // web01 (on schedule, its lost snapshot found again for a moment) leaves the list the server filters.
    await db().updateTable('snapshot').set({ status: 1 }).where('name', '=', 's2').execute();
    await w.page.getByLabel(/Only VMs needing attention/).check();
    await vms.locator('tr[data-vm="web01"]').waitFor({ state: 'detached' });
    await w.page.locator('main[data-ready="overview"]').waitFor();
    expect(await vms.locator('tr[data-vm]').evaluateAll((trs) => trs.map((t) => t.getAttribute('data-vm')))).toEqual(['db01', 'old01', 'run01']);
    await db().updateTable('snapshot').set({ status: 4 }).where('name', '=', 's2').execute();
    await w.page.getByLabel(/Only VMs needing attention/).uncheck();
    await vms.locator('tr[data-vm="web01"]').waitFor();
    const bar = w.page.getByTestId('storage-bar').first();
    expect(await bar.getAttribute('data-low')).toBe('true');
    expect(await bar.getByTestId('floor-mark').getAttribute('style')).toContain('left: 95%');
    expect(await bar.getAttribute('aria-label')).toContain('floor 5 % free');
    await w.page.locator('section[data-charts="ready"]').waitFor();
    expect(await w.page.getByTestId('bytes-chart').count()).toBeGreaterThan(0);
    await screenshot(w.page, 'console-overview');
    expect(await axeViolations(w.page)).toEqual([]);

    await problems.getByRole('link', { name: 'Open the snapshots of web01' }).click();
    await w.page.waitForURL(`${s.url}/vm/web01#snapshots`);
    await row(w.page, 's2', 1, 'lost').waitFor();
    await w.page.goBack();
    await w.page.getByTestId('problems').getByRole('link', { name: 'Open the definitions of db01' }).click();
    await w.page.waitForURL(`${s.url}/vm/db01#definitions`);
    await w.page.getByRole('table', { name: 'Snapshot definitions' }).waitFor();
    expect(w.problems).toEqual([]);
  });

  it('marks a libvirt VM: status from libvirt, a disk detached from its domain, a disk on no esnap storage', async () => {
    // A VM the libvirt inventory wrote (src/hypervisor/libvirt.rows.ts): vda on the storage, vdb left the domain, vdc a block device.
    const lv = await makeVm(s, 'lv01', { disks: [4, 2], status: 2 });
    await db().updateTable('vm').set({ libvirt: 1 }).where('uuid', '=', lv.uuid).execute();
    await db().updateTable('vm_disk').set({ libvirt_target: 'vda', libvirt_source: lv.diskPaths[0]! }).where('vm_uuid', '=', lv.uuid).where('real_id', '=', 0).execute();
    await db().updateTable('vm_disk').set({ libvirt_target: 'vdb', libvirt_source: lv.diskPaths[1]!, detached: 1 }).where('vm_uuid', '=', lv.uuid).where('real_id', '=', 1).execute();
    await db()
      .insertInto('vm_disk')
      .values({ vm_uuid: lv.uuid, real_id: 2, storage_id: 0, path: `libvirt:${lv.uuid}:2`, size_mb: 0, created: new Date().toISOString(), libvirt_target: 'vdc', libvirt_source: '/dev/vg0/lv01-data', detached: 0, unmapped: 'block device, not an image under a storage root' })
      .execute();
    try {
      await w.page.goto(`${s.url}/`);
      await w.page.locator('main[data-ready="overview"]').waitFor();
      const tr = w.page.getByRole('table', { name: 'Virtual machines' }).locator('tr[data-vm="lv01"]');
      expect(await tr.locator('td[data-label="Status"]').innerText()).toBe('running (libvirt)');
      const disks = tr.locator('td[data-label="Disks"]');
      expect(await disks.locator('[data-disk="1"]').innerText()).toBe('4.0 MiB (vda)');
      expect(await disks.locator('[data-disk="2"] [data-disk-flag="detached"]').innerText()).toContain('detached');
      expect(await disks.locator('[data-disk="3"] [data-disk-flag="unmapped"]').getAttribute('title')).toBe('Not on an esnap storage, never snapshotted: block device, not an image under a storage root');
      await tr.scrollIntoViewIfNeeded();
      await screenshot(w.page, 'console-libvirt-overview');

      await w.page.goto(`${s.url}/vm/lv01`);
      const status = w.page.getByTestId('vm-status');
      await status.waitFor();
      expect(await status.innerText()).toBe('running (reported by libvirt)');
      const facts = w.page.getByTestId('vm-disks');
      expect(await facts.locator('[data-disk="2"]').innerText()).toContain('disk 2: 2.0 MiB (vdb)');
      expect(await facts.locator('[data-disk="2"] [data-disk-flag="detached"]').innerText()).toContain('detached');
      expect(await facts.locator('[data-disk="3"]').innerText()).toContain('not on an esnap storage (block device, not an image under a storage root; never snapshotted)');
      expect(await facts.locator('[data-disk="1"] [data-disk-flag]').count()).toBe(0);
      // The disk on no esnap storage cannot be snapshotted: offered in the create dialog, but disabled.
      await w.page.getByRole('button', { name: 'Create snapshot' }).click();
      const create = w.page.getByRole('dialog', { name: 'Create snapshot' });
      const options = create.locator('select[name="disk_id"] option');
      expect(await options.allInnerTexts()).toEqual(['disk 1 vda (4.0 MiB)', 'disk 2 vdb (2.0 MiB), detached', 'disk 3 vdc (0 B): not on an esnap storage']);
      expect(await options.evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).disabled))).toEqual([false, false, true]);
      await screenshot(w.page, 'console-libvirt-create');
      await create.getByRole('button', { name: 'Cancel' }).click();
      await screenshot(w.page, 'console-libvirt-vm');
      expect(await axeViolations(w.page)).toEqual([]);
      expect(w.problems).toEqual([]);
    } finally {
      await db().deleteFrom('vm_disk').where('vm_uuid', '=', lv.uuid).execute();
      await db().deleteFrom('vm').where('uuid', '=', lv.uuid).execute();
    }
  });

  it('writes schedules in words beside the cron', async () => {
    await w.page.goto(`${s.url}/vm/db01`);
    const sched = w.page.getByRole('table', { name: 'Snapshot definitions' }).getByTestId('schedule');
    expect(await sched.innerText()).toBe('every day at 05:30 (Europe/Bratislava) 30 5 * * *');
    expect(await sched.getAttribute('data-error')).toBeNull();
    await screenshot(w.page, 'console-schedule-words');
    expect(await axeViolations(w.page)).toEqual([]);

    // A schedule that never fires is an error, its cron still beside it.
    await w.page.goto(`${s.url}/vm/old01`);
    const defs = w.page.getByRole('table', { name: 'Snapshot definitions' });
    await defs.waitFor();
    const never = defs.locator('tr', { hasText: 'leapday' }).getByTestId('schedule');
    expect(await never.getAttribute('data-error')).toBe('true');
    expect(await never.innerText()).toBe('Error: never fires: no date matches this schedule 0 0 30 2 *');
    expect(await never.locator('.error-text').evaluate((el) => getComputedStyle(el).color)).toMatch(/rgb\((192, 38, 45|255, 123, 114)\)/);
    expect(await defs.locator('tr', { hasText: 'hourly' }).getByTestId('schedule').innerText()).toBe('every hour, on the hour (UTC) 0 * * * *');
    await screenshot(w.page, 'console-schedule-never-fires');
    expect(await axeViolations(w.page)).toEqual([]);
  });

  it('styles destructive actions red and disables those that cannot succeed, with the reason', async () => {
    await w.page.goto(`${s.url}/vm/web01`);
    const lost = row(w.page, 's2', 1, 'lost');
    await lost.waitFor();
    const rollback = lost.getByRole('button', { name: /Roll back to s2/ });
    expect(await rollback.isDisabled()).toBe(true);
    expect(await rollback.getAttribute('data-reason')).toBe('The snapshot is lost: its data is gone from storage');
    expect(await lost.getByRole('button', { name: /Restore s2/ }).isDisabled()).toBe(true);
    expect(await lost.locator('span.action').first().getAttribute('title')).toBe('The snapshot is lost: its data is gone from storage');
    const pinnedDelete = row(w.page, 's3', 1).getByRole('button', { name: /Delete s3/ });
    expect(await pinnedDelete.isDisabled()).toBe(true);
    expect(await pinnedDelete.getAttribute('data-reason')).toBe('The snapshot is pinned: unpin it to delete it');
    await screenshot(w.page, 'console-disabled-actions');
    expect(await axeViolations(w.page)).toEqual([]);
    for (const b of await w.page.locator('table[data-testid="snapshots"] td.actions button').all()) {
      expect(await b.getAttribute('class')).toBe('danger');
      // Red text, never the filled primary style.
      expect(await b.evaluate((el) => getComputedStyle(el).color)).toMatch(/rgb\((192, 38, 45|255, 123, 114)\)/);
    }

    // The rollback dialog lists the newer snapshots: file storage keeps them.
    await row(w.page, 's1', 1).getByRole('button', { name: /Roll back to s1/ }).click();
    const dialog = w.page.getByRole('dialog', { name: 'Roll back disk 1 to s1' });
    const newer = dialog.getByTestId('newer');
    await newer.getByText('they are kept').waitFor();
    expect(await newer.getAttribute('data-fate')).toBe('kept');
    expect(await newer.locator('li').allInnerTexts()).toEqual([expect.stringMatching(/^s2 /), expect.stringMatching(/^s3 /)]);
    expect(await dialog.getByLabel(/Type the VM name/).count()).toBe(0);
    expect(await dialog.getByRole('button', { name: 'Roll back' }).getAttribute('class')).toBe('danger');
    expect(await axeViolations(w.page)).toEqual([]);
    await dialog.getByRole('button', { name: 'Cancel' }).click();

    // The same storage reported as ZFS: the newer snapshots would be destroyed, so the name is asked for.
    await db().updateTable('node_storage').set({ driver: 'zfs' }).execute();
    try {
      await row(w.page, 's1', 1).getByRole('button', { name: /Roll back to s1/ }).click();
      await newer.getByText('they are destroyed by the rollback').waitFor();
      const submit = dialog.getByRole('button', { name: 'Roll back' });
      expect(await submit.isDisabled()).toBe(true);
      expect(await submit.getAttribute('title')).toBe('Type web01 to confirm');
      await dialog.getByLabel(/Type the VM name/).fill('web0');
      expect(await submit.isDisabled()).toBe(true);
      await dialog.getByLabel(/Type the VM name/).fill('web01');
      expect(await submit.isDisabled()).toBe(false);
      await screenshot(w.page, 'console-rollback-zfs');
      await dialog.getByRole('button', { name: 'Cancel' }).click();
    } finally {
      await db().updateTable('node_storage').set({ driver: 'file' }).execute();
    }

    // A running VM: rollback disabled with its reason.
    await w.page.goto(`${s.url}/vm/run01`);
    const r1 = row(w.page, 'r1', 1).getByRole('button', { name: /Roll back to r1/ });
    await r1.waitFor();
    expect(await r1.isDisabled()).toBe(true);
    expect(await r1.getAttribute('data-reason')).toBe('The VM is running: stop it before a rollback');
    expect(w.problems).toEqual([]);
  });

  it('draws the VM’s last days with failed and skipped runs marked', async () => {
    await w.page.goto(`${s.url}/vm/web01`);
    const tl = w.page.getByTestId('timeline');
    await tl.waitFor();
    expect(await tl.locator('g[data-lane="1/hourly"] line[data-run="skipped"]').count()).toBe(1);
    expect(await tl.locator('g[data-lane="1/hourly"] line[data-run="failed"]').count()).toBe(1);
    expect(await tl.locator('g[data-lane="1/manual"] circle[data-status="lost"]').count()).toBe(1);
    expect(await tl.locator('g[data-lane="1/manual"] circle[data-status="ok"]').count()).toBe(2);
    expect(await tl.locator('g[data-lane="1/backup"] rect[data-backup-status="lost"]').count()).toBe(1);
    expect(await tl.getAttribute('aria-label')).toBe('3 snapshots, 1 backup, 1 failed and 1 skipped scheduled runs in the last 7 days');
    await screenshot(w.page, 'console-timeline');
  });

  it('shows the task log readably: the object links to its VM, details as fields, failures expandable', async () => {
    await w.page.goto(`${s.url}/tasks`);
    const log = w.page.getByTestId('task-log');
    const failure = log.locator('tr[data-status="FAILURE"]').first();
    await failure.waitFor();
    expect(await failure.getByRole('link', { name: 'db01' }).getAttribute('href')).toBe('/vm/db01');
    const details = failure.locator('details.failure');
    expect(await details.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    await details.locator('summary').click();
    expect(await details.locator('dt').allInnerTexts()).toEqual(['snapname', 'disk id', 'msg']);
    expect(await details.locator('dd').allInnerTexts()).toEqual(['x1', '1', 'Got bad return code (1)']);
    const ok = log.locator('tr[data-status="PENDING"]').first();
    expect(await ok.locator('dl.fields dt').count()).toBeGreaterThan(0);
    await screenshot(w.page, 'console-task-log');
    expect(await axeViolations(w.page)).toEqual([]);
    expect(w.problems).toEqual([]);
  });

  it('fits 400 px without sideways scrolling on every page', async () => {
    await w.page.setViewportSize({ width: 400, height: 800 });
    try {
      for (const [path, ready] of [
        ['/', 'main[data-ready="overview"]'],
        ['/vm/web01', 'table[data-testid="snapshots"]'],
        ['/tasks', 'table[data-testid="task-log"]'],
        ['/backups', 'table[data-testid="backups"]'],
      ] as const) {
        await w.page.goto(`${s.url}${path}`);
        await w.page.locator(ready).waitFor();
        expect(await scrollsSideways(w.page), path).toBe(false);
        // Icons are inline SVG; no emoji or dingbats (they render as empty boxes without a font for them).
        expect(await w.page.locator('main svg.icon').count(), path).toBeGreaterThan(0);
        expect(await emojiIn(w.page), path).toEqual([]);
        expect(await axeViolations(w.page), path).toEqual([]);
        await screenshot(w.page, `console-400px${path.replace(/\//g, '-')}`);
      }
    } finally {
      await w.page.setViewportSize({ width: 1400, height: 900 });
    }
    // The page for an unknown address, too.
    await w.page.goto(`${s.url}/no/such/page`);
    await w.page.getByRole('heading', { name: 'Not found' }).waitFor();
    expect(await axeViolations(w.page)).toEqual([]);
  });

  it('reaches every link, button and field of each page from the keyboard', async () => {
    for (const [path, ready] of [
      ['/', 'section[data-charts="ready"]'],
      ['/vm/web01', 'table[data-testid="snapshots"] tbody tr[data-name="s1"]'],
      ['/tasks', 'table[data-testid="task-log"] tbody tr'],
      ['/backups', 'table[data-testid="backups"] tbody tr[data-name]'],
    ] as const) {
      await w.page.goto(`${s.url}${path}`);
      await w.page.locator(ready).first().waitFor();
      const { wanted, seen } = await tabThrough(w.page);
      expect(seen, path).toBe(wanted);
    }
  });

  async function tabThrough(page: Page): Promise<{ wanted: number; seen: number }> {
    const wanted = await page.evaluate(() => {
      const els = [...document.querySelectorAll('main a[href], main button:not([disabled]), main input:not([disabled]), main select:not([disabled])')];
      els.forEach((el, i) => el.setAttribute('data-kbd', String(i)));
      return els.length;
    });
    const seen = new Set<string>();
    await page.locator('body').focus();
    for (let i = 0; i < wanted + 20 && seen.size < wanted; i++) {
      await page.keyboard.press('Tab');
      const k = await page.evaluate(() => document.activeElement?.getAttribute('data-kbd') ?? null);
      if (k !== null) seen.add(k);
    }
    return { wanted, seen: seen.size };
  }

  it('signs in with a wrong key showing one message; the API-key field is as wide as the others', async () => {
    const p = await openPage(b, `${s.url}/`);
    const user = await p.page.getByLabel('Username', { exact: true }).boundingBox();
    const key = await p.page.getByLabel('API key', { exact: true }).boundingBox();
    expect(Math.abs(user!.width - key!.width)).toBeLessThan(2);
    expect(await axeViolations(p.page)).toEqual([]);
    await p.page.getByLabel('API key', { exact: true }).fill('wrong-key');
    await p.page.getByLabel('API key', { exact: true }).press('Enter');
    await p.page.getByRole('alert').filter({ hasText: 'Invalid API key' }).waitFor();
    await p.page.waitForTimeout(300);
    expect(await p.page.getByText('Invalid API key').count()).toBe(1);
    expect(await p.page.getByText(/Signed out/).count()).toBe(0);
    await screenshot(p.page, 'console-signin-wrong-key');
    await p.page.setViewportSize({ width: 400, height: 800 });
    expect(await scrollsSideways(p.page)).toBe(false);
    expect(await axeViolations(p.page)).toEqual([]);
    await screenshot(p.page, 'console-400px-signin');
    await p.page.close();
  });
});
