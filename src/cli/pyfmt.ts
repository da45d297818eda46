/**
 * Python's text forms of JSON values, because Danube's es is a Python script and scripts compare
 * its bytes: `json.dumps` (ASCII-only, `", "`/`": "` separators, `","` with an indent), `str()`
 * and `repr()` of parsed values (used by the table formats), and `format(x, "g")` (tabulate's
 * float format).
 *
 * One limit: JSON.parse cannot tell `1.0` from `1`, so an integral float prints as an int here
 * (Python would print `1.0`).
 */

/** A JSON value whose objects keep their key order (Maps come from parameter parsing). */
export type PyValue = null | boolean | number | string | PyValue[] | { [k: string]: PyValue } | Map<string, PyValue>;

function entries(v: { [k: string]: PyValue } | Map<string, PyValue>): Array<[string, PyValue]> {
  return v instanceof Map ? [...v.entries()] : Object.entries(v);
}

/** Python 3 `repr(float)`: the shortest round-trip digits, exponent form outside 1e-4 ≤ |x| < 1e16. */
function floatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  const [mant, expStr] = x.toExponential().split('e') as [string, string];
  const exp = Number(expStr);
  if (exp < -4 || exp >= 16) {
    const sign = exp < 0 ? '-' : '+';
    return `${mant}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  const s = String(x);
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/**
 * `str()` of a JSON number as Python parsed it: an int when the JSON text had no fraction or
 * exponent, which for JSON written by JavaScript (esnap) means integral and below 1e21.
 */
export function pyNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return BigInt(n).toString();
  return floatRepr(n);
}

/** Python's `repr()` of a string: single quotes unless it holds `'` and no `"`. */
function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

export function pyRepr(v: PyValue): string {
  if (typeof v === 'string') return strRepr(v);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${entries(v).map(([k, x]) => `${strRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
  return pyStr(v);
}

/** Python's `str()` (and `'%s' %`) of a parsed JSON value. */
export function pyStr(v: PyValue | undefined): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') return pyNumber(v);
  if (typeof v === 'string') return v;
  return pyRepr(v);
}

/** `json.dumps` escaping with `ensure_ascii=True`: everything outside space..`~` as \uXXXX. */
function jsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Python's `json.dumps(value, indent=indent)`.
 *
 *   pyJson(new Map([['disk_id', '1']]))  →  '{"disk_id": "1"}'
 */
export function pyJson(v: PyValue, indent?: number): string {
  return dump(v, indent, 0);
}

function dump(v: PyValue, indent: number | undefined, level: number): string {
  if (v === null) return 'null';
  if (v === true) return 'true';
  if (v === false) return 'false';
  if (typeof v === 'number') return pyNumber(v);
  if (typeof v === 'string') return jsonString(v);
  const items: string[] = Array.isArray(v)
    ? v.map((x) => dump(x, indent, level + 1))
    : entries(v).map(([k, x]) => `${jsonString(k)}: ${dump(x, indent, level + 1)}`);
  const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
  if (items.length === 0) return open + close;
  if (indent === undefined) return open + items.join(', ') + close;
  const pad = '\n' + ' '.repeat(indent * (level + 1));
  return open + pad + items.join(',' + pad) + '\n' + ' '.repeat(indent * level) + close;
}

/** Python's `format(x, "g")`: 6 significant digits, trailing zeros dropped. */
export function pyFormatG(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const [mant, expStr] = x.toExponential(5).split('e') as [string, string];
  const exp = Number(expStr);
  const trim = (s: string): string => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (exp < -4 || exp >= 6) {
    const sign = exp < 0 ? '-' : '+';
    return `${trim(mant)}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return trim(x.toFixed(Math.max(0, 5 - exp)));
}
