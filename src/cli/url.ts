/**
 * Request URLs as Danube's es (Python requests) builds them: API URL + resource with a trailing
 * slash, the path re-quoted (unsafe characters percent-encoded, existing escapes kept), and GET
 * parameters in the query string the way `requests` encodes them (`quote_plus`, booleans as
 * `True`/`False`, null left out, a list as repeated keys).
 *
 *   buildUrl('http://127.0.0.1:8000/api', '/vm/web01/snapshot', new Map([['full', true]]))
 *     →  'http://127.0.0.1:8000/api/vm/web01/snapshot/?full=True'
 */
import type { Params } from './args.js';
import { pyStr, type PyValue } from './pyfmt.js';

const UNRESERVED = /[A-Za-z0-9\-._~]/;
// requests' safe set, less `#`: es sends what was typed instead of cutting a fragment off.
const PATH_SAFE = /[!$&'()*+,/:;=?@[\]]/;

function utf8Escape(ch: string): string {
  return [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

function quote(s: string, keepPercent: boolean): string {
  let out = '';
  for (const ch of s) out += UNRESERVED.test(ch) || PATH_SAFE.test(ch) || (keepPercent && ch === '%') ? ch : utf8Escape(ch);
  return out;
}

/**
 * What requests 2.28 (with urllib3 1.26) makes of a path: when every `%` starts a valid escape,
 * escapes of unreserved characters are decoded and the others kept (upper-cased); otherwise every
 * `%` is encoded. Unsafe characters are percent-encoded as UTF-8.
 */
export function requotePath(path: string): string {
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) return quote(path, false);
  const decoded = path.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => {
    const c = String.fromCharCode(parseInt(h, 16));
    return UNRESERVED.test(c) ? c : `%${h.toUpperCase()}`;
  });
  return quote(decoded, true);
}

/** Python's `urllib.parse.quote_plus`. */
export function quotePlus(s: string): string {
  let out = '';
  for (const ch of s) {
    if (/[A-Za-z0-9_.\-~]/.test(ch)) out += ch;
    else if (ch === ' ') out += '+';
    else out += utf8Escape(ch);
  }
  return out;
}

/** The query string of GET parameters, as `requests` encodes a dict of params. */
export function encodeQuery(params: Params): string {
  const pairs: string[] = [];
  for (const [key, value] of params) {
    let values: PyValue[];
    if (Array.isArray(value)) values = value;
    // requests iterates a dict value, which yields its keys.
    else if (value !== null && typeof value === 'object') values = value instanceof Map ? [...value.keys()] : Object.keys(value);
    else values = [value];
    for (const v of values) {
      if (v === null) continue;
      pairs.push(`${quotePlus(key)}=${quotePlus(pyStr(v))}`);
    }
  }
  return pairs.join('&');
}

/**
 * The full URL. A query string inside the resource stays (Danube would have put the slash after
 * it); the trailing slash goes on the path.
 */
export function buildUrl(apiUrl: string, resource: string, query: Params | null): string {
  const q = resource.indexOf('?');
  let path = q >= 0 ? resource.slice(0, q) : resource;
  const resourceQuery = q >= 0 ? requotePath(resource.slice(q + 1)) : '';
  if (!path.endsWith('/')) path += '/';
  const extra = query ? encodeQuery(query) : '';
  const search = [resourceQuery, extra].filter((s) => s !== '').join('&');
  return `${apiUrl}${requotePath(path)}${search ? `?${search}` : ''}`;
}
