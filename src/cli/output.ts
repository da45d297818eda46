/**
 * What es prints on stdout (spec 12.2), byte for byte as Danube's es under Python 3:
 *
 * - json: `json.dumps({"method", "url", "status", "text"}, indent=4)`; with `-d` also `command`,
 *   `headers` (the answer's) and `request.headers`. For `help` (OPTIONS) only the view's
 *   description is printed.
 * - csv / tabulate: the `result` (or `results`) of a 2xx answer as a table: a list of objects
 *   gets the first object's keys as headers, an object becomes key/value rows, a list of scalars
 *   one column; nested values are flattened to `k: v,k: v` and `a,b`. Anything else (a string,
 *   a non-2xx detail string) is printed as it is.
 */
import type { OutputFormat } from './args.js';
import { pyJson, pyStr, type PyValue } from './pyfmt.js';
import { csvRows, tabulate } from './table.js';

export interface Answer {
  readonly method: string;
  readonly url: string;
  /** The final status; `201?` when a stream ended without one. */
  readonly status: number | string;
  /** Parsed JSON, or the raw text when it is not JSON. */
  readonly text: PyValue;
  readonly debug?: {
    readonly command: string;
    readonly headers: ReadonlyArray<readonly [string, string]>;
    readonly requestHeaders: ReadonlyArray<readonly [string, string]>;
  };
}

const isObject = (v: PyValue): v is { [k: string]: PyValue } => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map);

/** ANSI colour of a status: green 2xx, cyan 3xx, yellow 4xx, red 5xx and unknown. */
export function statusColour(status: number | string): string {
  if (typeof status !== 'number') return '31';
  if (status < 300) return '32';
  if (status < 400) return '36';
  if (status < 500) return '33';
  return '31';
}

function renderJson(a: Answer, colour: boolean): string {
  if (a.method === 'OPTIONS' && isObject(a.text) && Object.hasOwn(a.text, 'description')) {
    return `${pyStr(a.text['description'])}\n`;
  }
  const out = new Map<string, PyValue>([
    ['method', a.method],
    ['url', a.url],
    ['status', a.status],
    ['text', a.text],
  ]);
  if (a.debug) {
    out.set('command', a.debug.command);
    out.set('headers', new Map(a.debug.headers.map(([k, v]) => [k, v] as [string, PyValue])));
    out.set('request.headers', new Map(a.debug.requestHeaders.map(([k, v]) => [k, v] as [string, PyValue])));
  }
  let text = pyJson(out, 4);
  if (colour) {
    // The first `"status": ` at the top level is ours: "method" and "url" come before it and are
    // one-line strings.
    text = text.replace(/^( {4}"status": )(.*?)(,?)$/m, (_m, key: string, value: string, comma: string) => `${key}\x1b[1;${statusColour(a.status)}m${value}\x1b[0m${comma}`);
  }
  return `${text}\n`;
}

/** Rows and headers of the table view, or the plain text printed instead of a table. */
export function tableOf(status: number | string, body: PyValue): { rows: PyValue[][]; headers: string[] } | { text: string } {
  let txt = body;
  if (typeof status === 'number' && status > 199 && status < 300 && isObject(txt)) {
    if (Object.hasOwn(txt, 'result')) txt = txt['result']!;
    else if (Object.hasOwn(txt, 'results')) txt = txt['results']!;
  }
  if (isObject(txt)) return { rows: Object.entries(txt).map(([k, v]) => [k, normalize(v)]), headers: [] };
  if (Array.isArray(txt)) {
    const first = txt[0];
    if (first === undefined) return { rows: [], headers: [] };
    if (isObject(first)) {
      return {
        headers: Object.keys(first),
        rows: txt.map((x) => (isObject(x) ? Object.values(x).map(normalize) : [normalize(x)])),
      };
    }
    if (Array.isArray(first)) return { rows: txt.map((x) => (Array.isArray(x) ? x : [x])), headers: [] };
    return { rows: txt.map((x) => [x]), headers: [] };
  }
  return { text: pyStr(txt) };
}

/** Danube's `_normalize`: an object as `k: v,k: v`, a list as `a,b`, scalars unchanged. */
function normalize(v: PyValue): PyValue {
  if (isObject(v)) return Object.entries(v).map(([k, x]) => `${k}: ${pyStr(x)}`).join(',');
  if (Array.isArray(v)) return v.map((x) => pyStr(x)).join(',');
  return v;
}

export function renderOutput(format: OutputFormat, a: Answer, colour: boolean): string {
  if (format.kind === 'json') return renderJson(a, colour);
  const t = tableOf(a.status, a.text);
  if ('text' in t) return `${t.text}\n`;
  if (format.kind === 'csv') return csvRows(t.rows, t.headers);
  return `${tabulate(t.rows, t.headers, format.fmt)}\n`;
}
