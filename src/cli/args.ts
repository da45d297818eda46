/**
 * The command line of Danube's es (spec 12.1), read in the same order as the original so that the
 * same mistakes give the same exit codes: help flags, `-d`, output formats (`--x` anywhere), the
 * action (11), the resource (12), the output format (13), then the parameters.
 *
 *   es -d create /vm/web01/snapshot/s1 -disk_id 1 -note "pre upgrade" --json
 */
import { readFileSync } from 'node:fs';
import type { PyValue } from './pyfmt.js';
import { TABLE_FORMATS } from './table.js';

export type Action = 'get' | 'create' | 'post' | 'set' | 'put' | 'delete' | 'help' | 'options' | 'login' | 'logout';
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'OPTIONS';

export const ACTIONS: Readonly<Record<Action, HttpMethod>> = {
  get: 'GET',
  create: 'POST',
  post: 'POST',
  set: 'PUT',
  put: 'PUT',
  delete: 'DELETE',
  help: 'OPTIONS',
  // Danube's docs call it `options`; its script knew only `help`. esnap takes both.
  options: 'OPTIONS',
  login: 'POST',
  logout: 'GET',
};

/** Parameters in the order given; a repeated key keeps its first place, as in a Python dict. */
export type Params = Map<string, PyValue>;

/** `json` (default), `csv`, or a tabulate format name (`tabulate` alone is `simple`). */
export type OutputFormat = { readonly kind: 'json' } | { readonly kind: 'csv' } | { readonly kind: 'table'; readonly fmt: string };

export interface Invocation {
  readonly action: Action;
  readonly method: HttpMethod;
  readonly debug: boolean;
  readonly format: OutputFormat;
  /** What follows the API URL: the resource, or `/accounts/login/` for login and logout. */
  readonly resource: string;
  readonly params: Params;
  /** `-api-key` taken out of the parameters: a string, or undefined when not given. */
  readonly apiKeyParam: string | undefined;
  /** The arguments without `-d` and output formats, joined (the `command` of `-d` output). */
  readonly command: string;
  /** Lines for stderr about ignored parameters. */
  readonly notes: readonly string[];
}

export type ParseResult =
  | { readonly kind: 'run'; readonly invocation: Invocation }
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  /** A usage error: Danube's code and stderr text (the usage for 11). */
  | { readonly kind: 'error'; readonly code: 11 | 12 | 13; readonly message: string; readonly detail?: string };

export function parseFormat(name: string): OutputFormat | null {
  if (name === 'json') return { kind: 'json' };
  if (name === 'csv' || name === 'tabulate-csv') return { kind: 'csv' };
  if (name === 'tabulate') return { kind: 'table', fmt: 'simple' };
  const m = /^tabulate-(.+)$/.exec(name);
  if (m && TABLE_FORMATS.includes(m[1]!)) return { kind: 'table', fmt: m[1]! };
  return null;
}

// Python's str.isalnum on the first character: any letter or digit, not only ASCII.
const KEY_START = /^[\p{L}\p{N}]/u;

export type FileReader = (path: string) => string;

const defaultReader: FileReader = (path) => readFileSync(path, 'utf8');

/**
 * `-name value` pairs: a bare key is true; true/false/null in any case are JSON; `json::<text>`
 * is parsed; `file::<path>` is the file's text; anything else is a string. A token that starts
 * with `-` and a letter or digit always starts a new key, so negative numbers need `json::-1`.
 * Tokens that follow a value without a key are ignored, as in Danube.
 */
export function parseParams(tokens: readonly string[], readFile: FileReader = defaultReader): { params: Params; notes: string[] } {
  const params: Params = new Map();
  const notes: string[] = [];
  let key: string | null = null;
  for (const tok of tokens) {
    if (tok.startsWith('-') && KEY_START.test(tok.slice(1))) {
      key = tok.slice(1);
      params.set(key, true);
      continue;
    }
    if (key === null) continue;
    const lower = tok.toLowerCase();
    if (lower === 'true') params.set(key, true);
    else if (lower === 'false') params.set(key, false);
    else if (lower === 'null') params.set(key, null);
    else if (tok.startsWith('json::')) {
      try {
        params.set(key, JSON.parse(tok.slice(6)) as PyValue);
      } catch (err) {
        // Danube's note says "Ignoring" but still sent `true`; esnap really leaves the key out.
        params.delete(key);
        notes.push(`Ignoring parameter ${key} (${(err as Error).message})`);
      }
    } else if (tok.startsWith('file::')) {
      try {
        // Python's text mode reads any line end as \n.
        params.set(key, readFile(tok.slice(6)).replace(/\r\n?/g, '\n'));
      } catch (err) {
        params.delete(key);
        notes.push(`Ignoring parameter ${key} (${(err as Error).message})`);
      }
    } else params.set(key, tok);
    key = null;
  }
  return { params, notes };
}

export function parseCommandLine(argv: readonly string[], readFile: FileReader = defaultReader): ParseResult {
  const args = [...argv];
  const first = args[0];
  if (first === '-h' || first === '--help' || first === '-?') return { kind: 'help' };
  if (first === '--version' && args.length === 1) return { kind: 'version' };
  let debug = false;
  if (args.length > 1 && (first === '-d' || first === '--debug')) {
    args.shift();
    debug = true;
  }
  // Any `--x` argument, wherever it stands, names the output format; the last one wins.
  let formatName = 'json';
  const rest: string[] = [];
  for (const a of args) {
    if (a.startsWith('--') && a.length > 2) formatName = a.slice(2);
    else rest.push(a);
  }
  const actionArg = rest[0]?.toLowerCase();
  if (actionArg === undefined || !Object.hasOwn(ACTIONS, actionArg)) {
    return { kind: 'error', code: 11, message: 'usage', ...(rest[0] !== undefined ? { detail: rest[0] } : {}) };
  }
  const action = actionArg as Action;
  const hasResource = rest.length > 1 && rest[1]!.startsWith('/');
  const resourceArg = hasResource ? rest[1]! : null;
  const options = rest.slice(hasResource ? 2 : 1);
  let resource: string;
  if (action === 'login' || action === 'logout') resource = resourceArg ?? `/accounts/${action}/`;
  else if (resourceArg !== null) resource = resourceArg;
  else return { kind: 'error', code: 12, message: 'ERROR: Missing resource' };
  const format = parseFormat(formatName);
  if (!format) return { kind: 'error', code: 13, message: 'ERROR: Invalid output format', detail: formatName };

  const { params, notes } = parseParams(options, readFile);
  let apiKeyParam: string | undefined;
  if (params.has('api-key')) {
    const v = params.get('api-key');
    params.delete('api-key');
    if (typeof v === 'string') apiKeyParam = v;
    else notes.push('Ignoring parameter api-key (it needs a value)');
  }
  return {
    kind: 'run',
    invocation: { action, method: ACTIONS[action], debug, format, resource, params, apiKeyParam, command: rest.join(' '), notes },
  };
}
