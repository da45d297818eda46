/**
 * The command line of es (spec 12.1): actions, -d, output formats, resource, parameter forms,
 * and the URLs they become. Pure functions; the wire and the server are covered in the other
 * cli tests.
 */
import { describe, expect, it } from 'vitest';
import { parseCommandLine, parseParams, type Invocation } from '../../src/cli/args.js';
import { buildUrl, encodeQuery, quotePlus, requotePath } from '../../src/cli/url.js';
import { pyJson } from '../../src/cli/pyfmt.js';

function run(argv: string[], readFile?: (p: string) => string): Invocation {
  const r = parseCommandLine(argv, readFile);
  if (r.kind !== 'run') throw new Error(`expected a run, got ${JSON.stringify(r)}`);
  return r.invocation;
}

describe('actions and their methods', () => {
  it.each([
    ['get', 'GET'],
    ['create', 'POST'],
    ['post', 'POST'],
    ['set', 'PUT'],
    ['put', 'PUT'],
    ['delete', 'DELETE'],
    ['help', 'OPTIONS'],
    ['options', 'OPTIONS'],
    ['GET', 'GET'],
    ['Delete', 'DELETE'],
  ])('%s is %s', (action, method) => {
    const inv = run([action, '/vm']);
    expect(inv.method).toBe(method);
    expect(inv.action).toBe(action.toLowerCase());
    expect(inv.resource).toBe('/vm');
  });

  it('login and logout default to /accounts/<action>/ and take a resource too', () => {
    expect(run(['login']).resource).toBe('/accounts/login/');
    expect(run(['login']).method).toBe('POST');
    expect(run(['logout']).resource).toBe('/accounts/logout/');
    expect(run(['logout']).method).toBe('GET');
    expect(run(['login', '/other/login']).resource).toBe('/other/login');
    expect([...run(['login', '-username', 'a', '-password', 'b']).params]).toEqual([
      ['username', 'a'],
      ['password', 'b'],
    ]);
  });

  it('a bad or missing action is 11, a missing resource 12, an unknown output format 13, in that order', () => {
    expect(parseCommandLine([])).toEqual({ kind: 'error', code: 11, message: 'usage' });
    expect(parseCommandLine(['fetch', '/vm'])).toMatchObject({ kind: 'error', code: 11, detail: 'fetch' });
    expect(parseCommandLine(['/vm'])).toMatchObject({ kind: 'error', code: 11 });
    expect(parseCommandLine(['get'])).toEqual({ kind: 'error', code: 12, message: 'ERROR: Missing resource' });
    expect(parseCommandLine(['get', 'vm'])).toMatchObject({ code: 12 });
    expect(parseCommandLine(['get', '/vm', '--xml'])).toMatchObject({ kind: 'error', code: 13, message: 'ERROR: Invalid output format', detail: 'xml' });
    // The resource is checked before the format, the action before both.
    expect(parseCommandLine(['get', '--xml'])).toMatchObject({ code: 12 });
    expect(parseCommandLine(['nope', '--xml'])).toMatchObject({ code: 11 });
  });

  it('-h, --help and -? are help only as the first argument', () => {
    for (const h of ['-h', '--help', '-?']) expect(parseCommandLine([h])).toEqual({ kind: 'help' });
    expect(parseCommandLine(['--help', 'get', '/vm'])).toEqual({ kind: 'help' });
    // Elsewhere --help is an output format named "help".
    expect(parseCommandLine(['get', '/vm', '--help'])).toMatchObject({ code: 13 });
    expect(parseCommandLine(['--version'])).toEqual({ kind: 'version' });
  });
});

describe('-d and output formats', () => {
  it('-d/--debug counts only first and with more arguments after it', () => {
    expect(run(['-d', 'get', '/vm']).debug).toBe(true);
    expect(run(['--debug', 'get', '/vm']).debug).toBe(true);
    expect(run(['get', '/vm']).debug).toBe(false);
    expect(parseCommandLine(['-d'])).toMatchObject({ code: 11, detail: '-d' });
    // Later, -d is a parameter named "d".
    expect([...run(['get', '/vm', '-d']).params]).toEqual([['d', true]]);
  });

  it('--x anywhere names the format and is taken out of the command', () => {
    expect(run(['get', '/vm']).format).toEqual({ kind: 'json' });
    expect(run(['get', '/vm', '--json']).format).toEqual({ kind: 'json' });
    expect(run(['get', '/vm', '--csv']).format).toEqual({ kind: 'csv' });
    expect(run(['get', '/vm', '--tabulate-csv']).format).toEqual({ kind: 'csv' });
    expect(run(['--tabulate', 'get', '/vm']).format).toEqual({ kind: 'table', fmt: 'simple' });
    expect(run(['get', '--tabulate-grid', '/vm', '-full']).format).toEqual({ kind: 'table', fmt: 'grid' });
    const inv = run(['-d', 'get', '/vm', '-full', '--csv', '-x', '1']);
    expect(inv.command).toBe('get /vm -full -x 1');
    expect(inv.format).toEqual({ kind: 'csv' });
  });
});

describe('parameters (spec 12.1)', () => {
  const params = (tokens: string[], readFile?: (p: string) => string) => parseParams(tokens, readFile);

  it('-name value gives strings; numbers stay strings', () => {
    expect([...params(['-disk_id', '1', '-note', 'pre upgrade']).params]).toEqual([
      ['disk_id', '1'],
      ['note', 'pre upgrade'],
    ]);
  });

  it('a bare key is true, at the end or before another key', () => {
    expect([...params(['-full', '-extended']).params]).toEqual([
      ['full', true],
      ['extended', true],
    ]);
  });

  it('true, false and null in any case are JSON', () => {
    expect([...params(['-a', 'TRUE', '-b', 'False', '-c', 'nULL', '-d', 'true']).params]).toEqual([
      ['a', true],
      ['b', false],
      ['c', null],
      ['d', true],
    ]);
  });

  it('json:: is parsed, file:: is read (line ends as Python text mode reads them)', () => {
    const files: Record<string, string> = { '/n.txt': 'line 1\r\nline 2\r' };
    const read = (p: string): string => {
      if (!(p in files)) throw new Error(`ENOENT: no such file or directory, open '${p}'`);
      return files[p]!;
    };
    const r = params(['-snapnames', 'json::["a","b"]', '-n', 'json::-1', '-o', 'json::{"k":{"x":null}}', '-note', 'file::/n.txt'], read);
    expect([...r.params]).toEqual([
      ['snapnames', ['a', 'b']],
      ['n', -1],
      ['o', { k: { x: null } }],
      ['note', 'line 1\nline 2\n'],
    ]);
    expect(r.notes).toEqual([]);
  });

  it('invalid json:: and file:: values are left out with a note', () => {
    const r = params(['-a', 'json::[1,', '-b', 'file::/missing', '-c', 'ok'], () => {
      throw new Error("ENOENT: no such file or directory, open '/missing'");
    });
    expect([...r.params]).toEqual([['c', 'ok']]);
    expect(r.notes).toHaveLength(2);
    expect(r.notes[0]).toMatch(/^Ignoring parameter a \(.+\)$/);
    expect(r.notes[1]).toBe("Ignoring parameter b (ENOENT: no such file or directory, open '/missing')");
  });

  it('a value starting with - and a letter or digit is a new key; other dashes are values', () => {
    expect([...params(['-order_by', '-created']).params]).toEqual([
      ['order_by', true],
      ['created', true],
    ]);
    expect([...params(['-retention', '-1']).params]).toEqual([
      ['retention', true],
      ['1', true],
    ]);
    expect([...params(['-note', '-', '-x', '--', '-y', '-_z', '-ü', 'v']).params]).toEqual([
      ['note', '-'],
      ['x', '--'],
      ['y', '-_z'],
      ['ü', 'v'],
    ]);
  });

  it('words without a key are ignored; a repeated key keeps its first place', () => {
    expect([...params(['stray', '-a', '1', 'extra', '-b', '2', '-a', '3']).params]).toEqual([
      ['a', '3'],
      ['b', '2'],
    ]);
  });

  it('an empty string is a value', () => {
    expect([...params(['-note', '']).params]).toEqual([['note', '']]);
  });

  it('-api-key is taken out of the parameters; -dc stays one', () => {
    const inv = run(['get', '/vm', '-api-key', 'k1', '-dc', 'main']);
    expect(inv.apiKeyParam).toBe('k1');
    expect([...inv.params]).toEqual([['dc', 'main']]);
    const bare = run(['get', '/vm', '-api-key']);
    expect(bare.apiKeyParam).toBeUndefined();
    expect(bare.notes).toEqual(['Ignoring parameter api-key (it needs a value)']);
  });
});

describe('URLs and bodies', () => {
  it('adds the trailing slash and encodes GET parameters as requests does', () => {
    const p = run(['get', '/vm/web01/snapshot', '-full', '-x', 'false', '-n', 'null', '-d', '1', '-s', 'a b&c=d/é~*', '-l', 'json::["a",null,2]', '-o', 'json::{"k1":1,"k2":2}']).params;
    expect(buildUrl('http://h/api', '/vm/web01/snapshot', p)).toBe(
      'http://h/api/vm/web01/snapshot/?full=True&x=False&d=1&s=a+b%26c%3Dd%2F%C3%A9~%2A&l=a&l=2&o=k1&o=k2',
    );
    expect(buildUrl('http://h/api', '/vm/', new Map())).toBe('http://h/api/vm/');
    expect(buildUrl('http://h/api', '/vm/?full=1', new Map([['x', '1']]))).toBe('http://h/api/vm/?full=1&x=1');
  });

  it('re-quotes unsafe path characters and keeps escapes', () => {
    // Checked against requests 2.28's prepared URLs.
    expect(requotePath('/vm/a b/ü/%41/%2f/#')).toBe('/vm/a%20b/%C3%BC/A/%2F/%23');
    expect(requotePath('/vm/a b/ü/%41/%2F/%/')).toBe('/vm/a%20b/%C3%BC/%2541/%252F/%25/');
    expect(quotePlus('a b+c')).toBe('a+b%2Bc');
    expect(encodeQuery(new Map([['f', 1.5]]))).toBe('f=1.5');
  });

  it('bodies are Python json.dumps of the parameters, in order, ASCII only', () => {
    const p = run(['create', '/x', '-disk_id', '1', '-note', 'ünï "q"', '-f', 'false', '-n', 'null', '-l', 'json::[1,{"a":[]}]', '-e', 'json::{}']).params;
    expect(pyJson(p)).toBe('{"disk_id": "1", "note": "\\u00fcn\\u00ef \\"q\\"", "f": false, "n": null, "l": [1, {"a": []}], "e": {}}');
    expect(pyJson(new Map())).toBe('{}');
  });
});
