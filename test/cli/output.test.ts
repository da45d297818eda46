/**
 * What es prints, byte for byte. The expected tables and CSV were produced by Danube's es output
 * code on Python 3.11 with tabulate 0.8.9 and the csv module, from the same JSON.
 */
import { describe, expect, it } from 'vitest';
import { renderOutput, tableOf } from '../../src/cli/output.js';
import { pyFormatG, pyJson, pyRepr, pyStr, type PyValue } from '../../src/cli/pyfmt.js';
import { StreamReader } from '../../src/cli/stream.js';
import { dotsProgress, formatElapsed, spinnerProgress } from '../../src/cli/progress.js';
import { hintsFor } from '../../src/cli/hints.js';

const table = (fmt: string, status: number, text: PyValue): string =>
  renderOutput(fmt === 'csv' ? { kind: 'csv' } : { kind: 'table', fmt }, { method: 'GET', url: 'u', status, text }, false);

const ok = (result: PyValue): PyValue => ({ status: 'SUCCESS', result, task_id: 'x' });

const SNAPS: PyValue = ok([
  { name: 'a', disk_id: 1, size: 1234.5678, note: 'x; y', flag: true, none: null, nested: { k: 1, l: [1, 2] }, lst: ['a', null, true] },
  { name: 'bbbbbbbbb', disk_id: 22, size: 0.5, note: '', flag: false, none: null, nested: {}, lst: [] },
]);
const NUMS: PyValue = { results: [{ n: '1', m: '1.50' }, { n: '007', m: '2' }, { n: '-3', m: '1e5' }] };

describe('--csv and --tabulate (Danube es + python-tabulate 0.8.9)', () => {
  it('a list of objects: headers from the first, nested values flattened', () => {
    expect(table('csv', 200, SNAPS)).toBe(
      'name;disk_id;size;note;flag;none;nested;lst\r\na;1;1234.5678;"x; y";True;;k: 1,l: [1, 2];a,None,True\r\nbbbbbbbbb;22;0.5;;False;;;\r\n',
    );
    expect(table('simple', 200, SNAPS)).toBe(
      'name         disk_id     size  note    flag    none    nested          lst\n' +
        '---------  ---------  -------  ------  ------  ------  --------------  -----------\n' +
        'a                  1  1234.57  x; y    True            k: 1,l: [1, 2]  a,None,True\n' +
        'bbbbbbbbb         22     0.5           False\n',
    );
  });

  it('an object is key/value rows without headers', () => {
    const obj = ok({ a: 1, b: 'two', c: null, d: [1, 'x'], e: { x: { y: 'z' } }, f: 1.5e-7, g: '  padded  ' });
    expect(table('simple', 200, obj)).toBe('-  -------------\na  1\nb  two\nc\nd  1,x\ne  x: {\'y\': \'z\'}\nf  1.5e-07\ng  padded\n-  -------------\n');
    expect(table('csv', 200, obj)).toBe("a;1\r\nb;two\r\nc;\r\nd;1,x\r\ne;x: {'y': 'z'}\r\nf;1.5e-07\r\ng;  padded  \r\n");
  });

  it('lists of strings and of lists; empty lists', () => {
    expect(table('simple', 200, ok(['one', 'two', 'three']))).toBe('-----\none\ntwo\nthree\n-----\n');
    expect(table('plain', 200, ok([['a', 1], ['bb', 22.25], ['c', null]]))).toBe('a    1\nbb  22.25\nc\n');
    expect(table('simple', 200, ok([]))).toBe('\n');
    expect(table('csv', 200, ok([]))).toBe('');
    expect(table('csv', 200, ok(['']))).toBe('""\r\n');
  });

  it('number-like strings make numeric columns in every format', () => {
    expect(table('grid', 200, NUMS)).toBe(
      '+-----+----------+\n|   n |        m |\n+=====+==========+\n|   1 |      1.5 |\n+-----+----------+\n| 007 |      2   |\n+-----+----------+\n|  -3 | 100000   |\n+-----+----------+\n',
    );
    expect(table('pipe', 200, NUMS)).toBe('|   n |        m |\n|----:|---------:|\n|   1 |      1.5 |\n| 007 |      2   |\n|  -3 | 100000   |\n');
    expect(table('github', 200, NUMS)).toBe('|   n |        m |\n|-----|----------|\n|   1 |      1.5 |\n| 007 |      2   |\n|  -3 | 100000   |\n');
    expect(table('orgtbl', 200, NUMS)).toBe('|   n |        m |\n|-----+----------|\n|   1 |      1.5 |\n| 007 |      2   |\n|  -3 | 100000   |\n');
    expect(table('psql', 200, NUMS)).toBe(
      '+-----+----------+\n|   n |        m |\n|-----+----------|\n|   1 |      1.5 |\n| 007 |      2   |\n|  -3 | 100000   |\n+-----+----------+\n',
    );
    expect(table('rst', 200, NUMS)).toBe('===  ========\n  n         m\n===  ========\n  1       1.5\n007       2\n -3  100000\n===  ========\n');
    expect(table('tsv', 200, NUMS)).toBe('  n\t       m\n  1\t     1.5\n007\t     2\n -3\t100000\n');
    expect(table('presto', 200, NUMS)).toBe('   n |        m\n-----+----------\n   1 |      1.5\n 007 |      2\n  -3 | 100000\n');
    expect(table('fancy_grid', 200, NUMS)).toBe(
      '╒═════╤══════════╕\n│   n │        m │\n╞═════╪══════════╡\n│   1 │      1.5 │\n├─────┼──────────┤\n│ 007 │      2   │\n├─────┼──────────┤\n│  -3 │ 100000   │\n╘═════╧══════════╛\n',
    );
  });

  it('bool-like, inf/nan, missing cells, float formatting, rst escapes', () => {
    expect(table('simple', 200, ok([{ a: 'True', b: 'inf', c: 'x' }, { a: 'False', b: 'nan', c: '"quoted"' }]))).toBe(
      'a        b  c\n-----  ---  --------\nTrue   inf  x\nFalse  nan  "quoted"\n',
    );
    expect(table('simple', 200, ok([{ a: 1, b: 2 }, { a: 3 }]))).toBe('  a    b\n---  ---\n  1    2\n  3\n');
    expect(table('simple', 200, ok([{ v: 123456789.123 }, { v: 0.0001 }, { v: 1e22 }]))).toBe('          v\n-----------\n1.23457e+08\n0.0001\n1e+22\n');
    expect(table('csv', 200, ok([{ v: 123456789.123 }, { v: 0.0001 }, { v: 1e22 }]))).toBe('v\r\n123456789.123\r\n0.0001\r\n1e+22\r\n');
    expect(table('rst', 200, ok({ '': '', x: '' }))).toBe('==\n..\nx\n==\n');
  });

  it('non-2xx answers and non-tables are printed as they are', () => {
    expect(table('csv', 404, { detail: 'VM not found' })).toBe('detail;VM not found\r\n');
    expect(table('simple', 200, 'plain text')).toBe('plain text\n');
    expect(table('csv', 200, ok(null))).toBe('None\n');
    // `result` is taken only from a 2xx answer.
    expect(tableOf(400, { status: 'FAILURE', result: { a: ['b'] } })).toEqual({
      rows: [
        ['status', 'FAILURE'],
        ['result', "a: ['b']"],
      ],
      headers: [],
    });
    expect(tableOf('201?', ok([1]))).toMatchObject({ headers: [] });
  });
});

describe('the JSON output', () => {
  const answer = { method: 'GET', url: 'http://h/api/vm/', status: 200, text: { status: 'SUCCESS', result: ['é', 1.5, 2, null, {}] } as PyValue };

  it('is json.dumps(indent=4) of method, url, status, text: ASCII only, "," at line ends', () => {
    expect(renderOutput({ kind: 'json' }, answer, false)).toBe(
      '{\n    "method": "GET",\n    "url": "http://h/api/vm/",\n    "status": 200,\n    "text": {\n        "status": "SUCCESS",\n        "result": [\n            "\\u00e9",\n            1.5,\n            2,\n            null,\n            {}\n        ]\n    }\n}\n',
    );
  });

  it('-d adds command, headers and request.headers after them', () => {
    const s = renderOutput({ kind: 'json' }, { ...answer, debug: { command: 'get /vm', headers: [['Allow', 'GET']], requestHeaders: [['User-Agent', 'es/1.3.3']] } }, false);
    expect(Object.keys(JSON.parse(s) as object)).toEqual(['method', 'url', 'status', 'text', 'command', 'headers', 'request.headers']);
    expect(s).toContain('    "command": "get /vm",\n    "headers": {\n        "Allow": "GET"\n    },\n    "request.headers": {\n        "User-Agent": "es/1.3.3"\n    }\n}\n');
  });

  it('help (OPTIONS) prints only the description; otherwise the whole answer', () => {
    const opts = { method: 'OPTIONS', url: 'u', status: 200, text: { name: 'v', description: 'Does things.' } };
    expect(renderOutput({ kind: 'json' }, opts, false)).toBe('Does things.\n');
    expect(renderOutput({ kind: 'json' }, { ...opts, status: 404, text: { detail: 'Not found' } }, false)).toContain('"detail": "Not found"');
  });

  it('colours only the status value when asked', () => {
    const s = renderOutput({ kind: 'json' }, answer, true);
    expect(s).toContain('    "status": \x1b[1;32m200\x1b[0m,\n');
    expect(s.replace(/\x1b\[[0-9;]*m/g, '')).toBe(renderOutput({ kind: 'json' }, answer, false));
    expect(renderOutput({ kind: 'json' }, { ...answer, status: 404 }, true)).toContain('\x1b[1;33m404\x1b[0m');
    expect(renderOutput({ kind: 'json' }, { ...answer, status: 500 }, true)).toContain('\x1b[1;31m500\x1b[0m');
    expect(renderOutput({ kind: 'json' }, { ...answer, status: '201?' }, true)).toContain('\x1b[1;31m"201?"\x1b[0m');
  });
});

describe('Python text forms', () => {
  it('str, repr, json.dumps and format g', () => {
    expect([pyStr(null), pyStr(true), pyStr(false), pyStr(3), pyStr(1.5), pyStr(1e-7), pyStr(1e16), pyStr(1e21), pyStr('s')]).toEqual([
      'None',
      'True',
      'False',
      '3',
      '1.5',
      '1e-07',
      '10000000000000000',
      '1e+21',
      's',
    ]);
    expect(pyRepr({ a: ["it's", 'q"', 'plain\n'], b: null })).toBe('{\'a\': ["it\'s", \'q"\', \'plain\\n\'], \'b\': None}');
    expect(pyJson({ a: [], b: { c: '\u007f\u{1F600}' } }, 2)).toBe('{\n  "a": [],\n  "b": {\n    "c": "\\u007f\\ud83d\\ude00"\n  }\n}');
    expect([1234.5678, 0.5, 123456789.123, 0.0001, 0.00001234, 1e22, -2.5, 100000].map(pyFormatG)).toEqual([
      '1234.57',
      '0.5',
      '1.23457e+08',
      '0.0001',
      '1.234e-05',
      '1e+22',
      '-2.5',
      '100000',
    ]);
  });
});

describe('ES-STREAM answers (spec 12.3)', () => {
  const events = () => {
    const seen: string[] = [];
    return { seen, ev: { keepAlive: () => seen.push('.'), end: () => seen.push('end') } };
  };

  it('counts every whitespace byte as a keep-alive, then reads the status line and the JSON', () => {
    const r = new StreamReader();
    const { seen, ev } = events();
    r.push(Buffer.from('  '), ev);
    r.push(Buffer.from(' \n'), ev);
    r.push(Buffer.from('200\n{"status": '), ev);
    r.push(Buffer.from('"SUCCESS"}\n'), ev);
    expect(seen).toEqual(['.', '.', '.', '.', 'end']);
    expect(r.finished).toBe(true);
    expect(r.result(201)).toEqual({ status: 200, text: '{"status": "SUCCESS"}' });
  });

  it('without a status line the status is "<http status>?", as Danube printed after its timeout', () => {
    const r = new StreamReader();
    r.push(Buffer.from(' {"status": "PENDING"}'), events().ev);
    expect(r.result(201)).toEqual({ status: '201?', text: '{"status": "PENDING"}' });
    const empty = new StreamReader();
    empty.push(Buffer.from('   '), events().ev);
    expect(empty.finished).toBe(false);
    expect(empty.result(201)).toEqual({ status: '201?', text: '' });
    const garbage = new StreamReader();
    garbage.push(Buffer.from('x200\n{}'), events().ev);
    expect(garbage.result(201)).toEqual({ status: '201?', text: '{}' });
  });
});

describe('waiting on stderr', () => {
  it('without a terminal: Danube\'s exact bytes', () => {
    let s = '';
    const p = dotsProgress((x) => (s += x));
    p.start('1e1d1-abc');
    p.keepAlive();
    p.keepAlive();
    p.done();
    expect(s).toBe('Waiting for pending task 1e1d1-abc ..\b\n');
  });

  it('on a terminal: a spinner with the elapsed time, redrawn in place', () => {
    let s = '';
    let now = 1000;
    const p = spinnerProgress((x) => (s += x), { now: () => now, colour: false, intervalMs: 0 });
    p.start('t1');
    now += 1500;
    p.keepAlive();
    now += 61_000;
    p.done();
    const frames = s.split('\r\x1b[2K').filter(Boolean);
    expect(frames).toEqual(['Waiting for pending task t1 ⠙ 0.0s', 'Waiting for pending task t1 ⠹ 1.5s', 'Waiting for pending task t1: done after 1m02s\n']);
    expect(s).not.toContain('.\b');
    expect([formatElapsed(999), formatElapsed(59_949), formatElapsed(3_725_000)]).toEqual(['1.0s', '59.9s', '1h02m']);
  });
});

describe('hints', () => {
  const base = { action: 'get', apiUrl: 'http://127.0.0.1:8000/api', sentApiKey: false, sentToken: false };
  it('say what to do next', () => {
    expect(hintsFor({ ...base, status: 403, text: { detail: 'Authentication credentials were not provided.' } })).toEqual(['no credentials: run es login or set ES_API_KEY']);
    expect(hintsFor({ ...base, sentToken: true, status: 403, text: { detail: 'Invalid token.' } })[0]).toMatch(/run es login again/);
    expect(hintsFor({ ...base, sentApiKey: true, status: 403, text: { detail: 'Invalid API key' } })[0]).toMatch(/ES_API_KEY/);
    expect(hintsFor({ ...base, sentApiKey: true, status: 403, text: { detail: 'Permission denied' } })).toEqual([]);
    expect(hintsFor({ ...base, status: 405, allow: 'GET, PUT, DELETE, OPTIONS' })).toEqual(['this resource takes: get, set, delete, help']);
    expect(hintsFor({ ...base, status: 200, text: {} })).toEqual([]);
    expect(hintsFor({ ...base, status: 201, taskId: 't-9', text: { status: 'PENDING', result: null, task_id: 't-9' } })).toEqual([
      'the task is still running: es get /task/t-9/status shows how it ends',
    ]);
    expect(hintsFor({ ...base, status: 201, taskId: 't-9', text: { status: 'SUCCESS', result: {} } })).toEqual([]);
  });
});
