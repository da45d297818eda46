/**
 * Disk paths over the API (issue 12, defects 7 and 8): a nested disk leaves no empty folder behind
 * when deleted, and a path under (or over) another disk's image is refused with one message that
 * tells nothing about what lies there, whichever DC it belongs to.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';

forEachDb('VM disk paths', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let root: string;
  beforeAll(async () => {
    s = await withServer(kind);
    root = join(s.storageRoot, 'storage');
  });
  afterAll(async () => s.cleanup());

  async function newVm(hostname: string, dc = 'main'): Promise<string> {
    const r = await s.req('POST', `/api/dc/${dc}/vm/${hostname}/define/`, { body: {} });
    expect(r.status).toBe(201);
    return r.body.result.uuid as string;
  }

  it('deleting a disk at nestdir/a/b/img removes its empty folders, under the root and under .snapshots', async () => {
    await newVm('nest01');
    expect((await s.req('POST', '/api/vm/nest01/define/disk/1/', { body: { size: 1, path: 'nestdir/a/b/img' } })).status).toBe(201);
    expect((await s.req('POST', '/api/vm/nest01/define/disk/2/', { body: { size: 1, path: 'nestdir/keep' } })).status).toBe(201);
    expect((await s.stream('POST', '/api/vm/nest01/snapshot/s1/', { body: { disk_id: 1 } })).finalStatus).toBe(200);
    expect(await readdir(join(root, '.snapshots', 'nestdir', 'a', 'b', 'img'))).not.toEqual([]);

    expect((await s.stream('DELETE', '/api/vm/nest01/define/disk/1/')).finalStatus).toBe(200);
    // Only the folders the other disk still uses are left; the storage's own folders stay.
    expect((await readdir(join(root, 'nestdir'))).sort()).toEqual(['keep']);
    expect(await readdir(join(root, '.snapshots'))).not.toContain('nestdir');
    expect(await readdir(root)).toContain('.snapshots');

    expect((await s.stream('DELETE', '/api/vm/nest01/define/disk/1/')).finalStatus).toBe(200); // now nestdir/keep
    expect((await readdir(root)).filter((f) => f !== '.snapshots')).toEqual([]);
  });

  it('a path under another VM\'s image is refused without saying what is there', async () => {
    expect((await s.req('POST', '/api/dc/other/', { body: {} })).status).toBe(201);
    const owner = await newVm('img01', 'other');
    expect((await s.req('POST', '/api/dc/other/vm/img01/define/disk/1/', { body: { size: 1 } })).status).toBe(201);
    await newVm('img02');
    const answers = [];
    for (const path of [`${owner}-disk0/x`, `${owner}-disk0/a/b`]) {
      const r = await s.req('POST', '/api/vm/img02/define/disk/1/', { body: { size: 1, path } });
      expect(r.status).toBe(400);
      expect(r.body.status).toBe('FAILURE');
      expect(r.body.result).toBe(`Disk path ${path} is not available: it, or a folder on it, is already taken`);
      answers.push(r.body.result);
    }
    expect(answers.join(' ')).not.toMatch(/exist|not a file|storage/);
    // Nothing was written: no row, and the other VM's image is still a file of its own.
    expect((await s.req('GET', '/api/vm/img02/define/disk/')).body.result).toEqual([]);
    expect(await readdir(root)).toContain(`${owner}-disk0`);
  });
});
