/**
 * The built `es` against a real esnap server (SQLite): the seed's examples, every action and
 * parameter form, ES-STREAM waits of real snapshot tasks, `-d`, tables and exit codes. What the
 * server received is read back through the API (the resulting rows) or from the URL es printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ADMIN_KEY, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { assertBuilt, makeTmp, out, runEs, type EsResult } from './es-helpers.js';

const SNAP_KEYS = ['hostname', 'vm_uuid', 'define', 'name', 'disk_id', 'note', 'type', 'created', 'status', 'size', 'id', 'fsfreeze', 'pinned'];
const OUT_KEYS = ['method', 'url', 'status', 'text'];
const WAIT_RE = /^Waiting for pending task (\S+) \.*\x08\n$/;

describe('es against a real esnap server', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  let tmp: ReturnType<typeof makeTmp>;
  let vm: VmFixture;
  let api: string;
  const es = (args: string[], env: Record<string, string> = {}): Promise<EsResult> =>
    runEs(args, { tmp: tmp.dir, env: { ES_API_URL: api, ES_API_KEY: ADMIN_KEY, ...env } });

  beforeAll(async () => {
    assertBuilt();
    s = await withServer('sqlite');
    api = `${s.url}/api`;
    tmp = makeTmp();
    vm = await makeVm(s, 'web01', { disks: [4] });
  });
  afterAll(async () => {
    await s.cleanup();
    tmp.cleanup();
  });

  describe("the seed's examples", () => {
    it('es get /vm/web01/define/snapshot', async () => {
      const r = await es(['get', '/vm/web01/define/snapshot']);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
      const o = out(r);
      expect(Object.keys(o)).toEqual(OUT_KEYS);
      expect(o).toMatchObject({ method: 'GET', url: `${api}/vm/web01/define/snapshot/`, status: 200, text: { status: 'SUCCESS', result: [] } });
      expect(o.text.task_id).toMatch(/^1d1d1-6f75849b-/);
      // 4-space indentation, as Danube's es prints it.
      expect(r.stdout).toBe(`${JSON.stringify(o, null, 4)}\n`);
    });

    it('es create /vm/web01/define/snapshot/daily -disk_id 1 -schedule "30 5 * * *" -retention 30', async () => {
      const r = await es(['create', '/vm/web01/define/snapshot/daily', '-disk_id', '1', '-schedule', '30 5 * * *', '-retention', '30']);
      expect(r.code).toBe(0);
      const o = out(r);
      expect(o).toMatchObject({ method: 'POST', url: `${api}/vm/web01/define/snapshot/daily/`, status: 201, text: { status: 'SUCCESS' } });
      expect(o.text.result).toMatchObject({ hostname: 'web01', vm_uuid: vm.uuid, name: 'daily', disk_id: 1, schedule: '30 5 * * *', retention: 30, active: true });
      expect(out(await es(['get', '/vm/web01/define/snapshot'])).text.result).toEqual(['daily']);
    });

    it('es get /vm/web01/snapshot', async () => {
      const r = await es(['get', '/vm/web01/snapshot']);
      expect(r.code).toBe(0);
      expect(out(r)).toMatchObject({ method: 'GET', url: `${api}/vm/web01/snapshot/`, status: 200, text: { status: 'SUCCESS', result: [] } });
    });

    it('es create /vm/web01/snapshot/backup1 -disk_id 1 waits for the task and prints its final status', async () => {
      const r = await es(['create', '/vm/web01/snapshot/backup1', '-disk_id', '1']);
      expect(r.code).toBe(0);
      const m = WAIT_RE.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      const o = out(r);
      expect(Object.keys(o)).toEqual(OUT_KEYS);
      expect(o.method).toBe('POST');
      expect(o.url).toBe(`${api}/vm/web01/snapshot/backup1/`);
      // The final status (the stream's status line), not the 201 of the HTTP header.
      expect(o.status).toBe(200);
      expect(o.text).toEqual({ task_id: m![1], status: 'SUCCESS', result: { returncode: 0, message: 'Snapshot successfully created', detail: '' } });
      expect(out(await es(['get', '/vm/web01/snapshot'])).text.result).toEqual(['backup1']);
    });
  });

  describe('waiting for real tasks', () => {
    it('a rollback waits until the disk is restored', async () => {
      const fh = await open(vm.diskPaths[0]!, 'r+');
      await fh.write(Buffer.from('CHANGED'), 0, 7, 0);
      await fh.close();
      const r = await es(['set', '/vm/web01/snapshot/backup1', '-disk_id', '1']);
      expect(r.code).toBe(0);
      const m = WAIT_RE.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      expect(out(r)).toEqual({
        method: 'PUT',
        url: `${api}/vm/web01/snapshot/backup1/`,
        status: 200,
        text: { task_id: m![1], status: 'SUCCESS', result: { returncode: 0, message: 'Snapshot successfully restored', detail: '' } },
      });
      const head = (await readFile(vm.diskPaths[0]!)).subarray(0, 7);
      expect(head.equals(Buffer.alloc(7))).toBe(true);
    });

    it('-force false (a spec 12.5 example) refuses an older snapshot: 417, exit 1, no wait', async () => {
      await es(['create', '/vm/web01/snapshot/newer', '-disk_id', '1']);
      const r = await es(['set', '/vm/web01/snapshot/backup1', '-disk_id', '1', '-force', 'false']);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('');
      expect(out(r)).toMatchObject({ status: 417, text: { detail: 'VM has more recent snapshots' } });
    });

    it('a task that fails ends the wait with its final 400 and exit 1', async () => {
      const broken = await makeVm(s, 'web02', { disks: [4] });
      await rm(broken.diskPaths[0]!);
      const r = await es(['create', '/vm/web02/snapshot/x', '-disk_id', '1']);
      expect(r.stderr).toMatch(WAIT_RE);
      expect(r.code).toBe(1);
      const o = out(r);
      expect(o.status).toBe(400);
      expect(o.text).toMatchObject({ status: 'FAILURE', result: { returncode: expect.any(Number) } });
      expect(o.text.result.returncode).not.toBe(0);
    });
  });

  describe('actions', () => {
    it('post and put are create and set; delete waits for its task', async () => {
      const c = await es(['post', '/vm/web01/snapshot/s-post', '-disk_id', '1', '-note', 'pre upgrade']);
      expect(c.code).toBe(0);
      expect(out(c).status).toBe(200);
      const u = await es(['put', '/vm/web01/snapshot/s-post', '-disk_id', '1', '-note', 'new note']);
      expect(u.code).toBe(0);
      expect(u.stderr).toBe('');
      expect(out(u)).toMatchObject({ method: 'PUT', status: 200, text: { status: 'SUCCESS', result: { name: 's-post', note: 'new note' } } });
      const d = await es(['delete', '/vm/web01/snapshot/s-post', '-disk_id', '1']);
      expect(d.code).toBe(0);
      expect(d.stderr).toMatch(WAIT_RE);
      expect(out(d)).toMatchObject({ method: 'DELETE', status: 200, text: { status: 'SUCCESS', result: { returncode: 0 } } });
      expect(out(await es(['get', '/vm/web01/snapshot'])).text.result).not.toContain('s-post');
    });

    it('help and options print the description of the view', async () => {
      const description = (await s.req('OPTIONS', '/api/vm/web01/snapshot/')).body.description as string;
      expect(description).toMatch(/snapshots/);
      for (const action of ['help', 'options']) {
        const r = await es([action, '/vm/web01/snapshot']);
        expect(r.code).toBe(0);
        expect(r.stdout).toBe(`${description}\n`);
      }
    });

    it('a method the view lacks: 405, exit 1, and which actions it takes', async () => {
      const r = await es(['delete', '/vm']);
      expect(r.code).toBe(1);
      expect(out(r)).toMatchObject({ status: 405, text: { detail: 'Method "DELETE" not allowed.' } });
      expect(r.stderr).toBe('this resource takes: get, help\n');
    });
  });

  describe('parameter forms reach the server as meant', () => {
    it('-name value is a string: a note with spaces is stored as typed', async () => {
      await es(['create', '/vm/web01/snapshot/s-note', '-disk_id', '1', '-note', 'pre upgrade']);
      const g = out(await es(['get', '/vm/web01/snapshot/s-note', '-disk_id', '1']));
      expect(Object.keys(g.text.result)).toEqual(SNAP_KEYS);
      expect(g.text.result.note).toBe('pre upgrade');
    });

    it('file:: sends the contents of a file', async () => {
      const path = join(tmp.dir, 'note.txt');
      await writeFile(path, 'from a file');
      const r = await es(['set', '/vm/web01/snapshot/s-note', '-disk_id', '1', '-note', `file::${path}`]);
      expect(out(r).text.result.note).toBe('from a file');
    });

    it('a bare key is true; true/false in any case are booleans, in the query string as True/False', async () => {
      const full = out(await es(['get', '/vm/web01/snapshot', '-full']));
      expect(full.url).toBe(`${api}/vm/web01/snapshot/?full=True`);
      expect(Object.keys(full.text.result[0])).toEqual(SNAP_KEYS);
      const no = out(await es(['get', '/vm/web01/snapshot', '-full', 'FALSE']));
      expect(no.url).toBe(`${api}/vm/web01/snapshot/?full=False`);
      expect(no.text.result.every((x: unknown) => typeof x === 'string')).toBe(true);
      const yes = out(await es(['get', '/vm/web01/snapshot', '-full', 'tRUE']));
      expect(typeof yes.text.result[0]).toBe('object');
    });

    it('json:: sends JSON: a bulk delete of two snapshots by name', async () => {
      await es(['create', '/vm/web01/snapshot/s-a', '-disk_id', '1']);
      await es(['create', '/vm/web01/snapshot/s-b', '-disk_id', '1']);
      const r = await es(['delete', '/vm/web01/snapshot', '-disk_id', '1', '-snapnames', 'json::["s-a","s-b"]']);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(WAIT_RE);
      expect(out(r).text.result).toMatchObject({ returncode: 0, message: 'Snapshots successfully deleted' });
      const names = out(await es(['get', '/vm/web01/snapshot'])).text.result as string[];
      expect(names).not.toContain('s-a');
      expect(names).not.toContain('s-b');
    });

    it('an invalid json:: value is left out with a note', async () => {
      const r = await es(['get', '/vm/web01/snapshot', '-full', 'json::{bad']);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^Ignoring parameter full \(.+\)\n$/);
      const o = out(r);
      expect(o.url).toBe(`${api}/vm/web01/snapshot/`);
      expect(typeof o.text.result[0]).toBe('string');
    });

    it('a value that starts with - and a letter is a new key', async () => {
      const r = await es(['get', '/vm/web01/snapshot', '-order_by', '-name']);
      expect(r.code).toBe(1);
      expect(out(r).url).toBe(`${api}/vm/web01/snapshot/?order_by=True&name=True`);
      expect(out(r).status).toBe(412);
      const ok = await es(['get', '/vm/web01/snapshot', '-order_by', 'name']);
      expect(out(ok).text.result).toEqual([...(out(ok).text.result as string[])].sort());
    });

    it('-dc is passed through', async () => {
      expect(out(await es(['get', '/vm', '-dc', 'main'])).text.result).toEqual(['web01', 'web02']);
      const r = await es(['get', '/vm', '-dc', 'nowhere']);
      expect(r.code).toBe(1);
      expect(out(r)).toMatchObject({ url: `${api}/vm/?dc=nowhere`, status: 404, text: { detail: 'Datacenter not found' } });
    });

    it('-api-key wins over ES_API_KEY', async () => {
      const good = await es(['get', '/vm', '-api-key', ADMIN_KEY], { ES_API_KEY: 'wrong-key-0000000000' });
      expect(good.code).toBe(0);
      const bad = await es(['get', '/vm', '-api-key', 'wrong-key-0000000000']);
      expect(bad.code).toBe(1);
      expect(out(bad)).toMatchObject({ status: 403, text: { detail: 'Invalid API key' } });
      expect(bad.stderr).toBe('the API key was refused: check ES_API_KEY (or -api-key)\n');
    });
  });

  describe('-d', () => {
    it('adds command, the answer headers and the request headers', async () => {
      const r = await es(['-d', 'get', '/vm/web01/snapshot', '-full']);
      expect(r.code).toBe(0);
      const o = out(r);
      expect(Object.keys(o)).toEqual([...OUT_KEYS, 'command', 'headers', 'request.headers']);
      expect(o.command).toBe('get /vm/web01/snapshot -full');
      expect(o.headers).toMatchObject({ es_version: '4.6', es_username: 'admin', es_dc: 'main' });
      expect(o['request.headers']).toEqual({
        'User-Agent': 'es/1.3.3',
        'Accept-Encoding': 'gzip, deflate',
        Accept: 'application/json; indent=4',
        Connection: 'keep-alive',
        'Content-Type': 'application/json; indent=4',
        'ES-STREAM': 'es',
        'ES-API-KEY': ADMIN_KEY,
      });
      expect(Object.keys(o['request.headers'])).toEqual(['User-Agent', 'Accept-Encoding', 'Accept', 'Connection', 'Content-Type', 'ES-STREAM', 'ES-API-KEY']);
    });

    it('shows the stream headers of a wait and the body length of a POST', async () => {
      const r = await es(['--debug', 'create', '/vm/web01/snapshot/s-debug', '-disk_id', '1', '--json']);
      const o = out(r);
      expect(o.command).toBe('create /vm/web01/snapshot/s-debug -disk_id 1');
      expect(o.headers).toMatchObject({ es_stream: 'True', es_task_id: o.text.task_id });
      expect(o['request.headers']['Content-Length']).toBe(String('{"disk_id": "1"}'.length));
      expect(o.status).toBe(200);
    });
  });

  describe('--csv and --tabulate', () => {
    it('print the result of a 2xx answer as a table', async () => {
      const csv = await es(['get', '/vm/web01/snapshot', '-full', '--csv']);
      expect(csv.code).toBe(0);
      const lines = csv.stdout.split('\r\n');
      expect(lines[0]).toBe(SNAP_KEYS.join(';'));
      expect(lines.at(-1)).toBe('');
      const names = out(await es(['get', '/vm/web01/snapshot'])).text.result as string[];
      expect(lines).toHaveLength(names.length + 2);
      expect(lines.slice(1, -1).map((l) => l.split(';')[3])).toEqual(names);
      expect(lines[1]!.split(';').slice(0, 2)).toEqual(['web01', vm.uuid]);

      const tab = await es(['get', '/vm', '--tabulate']);
      expect(tab.stdout).toBe('-----\nweb01\nweb02\n-----\n');
      const grid = await es(['get', '/vm/web01/snapshot/backup1', '--tabulate-grid']);
      expect(grid.stdout).toMatch(/^\+-+\+-+\+\n\| hostname +\| web01 +\|\n/);
    });

    it('prints the task log: two rows per task, integer task_type, absolute paging links', async () => {
      const cached = out(await es(['get', '/task/log']));
      expect(cached.status).toBe(200);
      const first = cached.text.results[0];
      expect(Object.keys(first)).toEqual(['time', 'task', 'status', 'username', 'msg', 'detail', 'object_name', 'object_alias', 'object_type', 'flag', 'task_type']);
      expect(typeof first.task_type).toBe('number');
      const csv = await es(['get', '/task/log', '--csv']);
      const lines = csv.stdout.split('\r\n');
      expect(lines[0]).toBe('time;task;status;username;msg;detail;object_name;object_alias;object_type;flag;task_type');
      const ended = lines.slice(1, -1).map((l) => l.split(';')).filter((f) => f[1] === first.task);
      expect(ended.map((f) => f[2])).toEqual([first.status, 'PENDING']);
      expect(ended.every((f) => /^[0-9]+$/.test(f[10]!))).toBe(true);
      const paged = out(await es(['get', '/task/log', '-page', '1']));
      expect(Object.keys(paged.text)).toEqual(['count', 'next', 'previous', 'results']);
      expect(paged.text.previous).toBeNull();
    });

    it('an error is printed as its detail row, with the same exit code', async () => {
      const r = await es(['get', '/vm/nope/snapshot', '--csv']);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('detail;VM not found\r\n');
    });
  });
});
