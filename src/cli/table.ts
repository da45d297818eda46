/**
 * Tables as Danube's es prints them with `--tabulate[-<fmt>]` (python-tabulate 0.8) and `--csv`
 * (Python's csv module, `;`, minimal quoting, CRLF line ends). Numbers and number-like strings
 * make a column numeric (right-aligned on the decimal point), everything else is left-aligned and
 * stripped; headers get two spaces of minimum padding; lines are right-stripped.
 *
 * Not reproduced: multi-line cells and East Asian wide characters (tabulate measures them with
 * wcwidth when installed); the formats not listed in TABLE_FORMATS.
 */
import { pyFormatG, pyStr, type PyValue } from './pyfmt.js';

type Line = readonly [begin: string, fill: string, sep: string, end: string] | 'pipe' | null;
type Row = readonly [begin: string, sep: string, end: string];

interface TableFormat {
  readonly lineabove: Line;
  readonly linebelowheader: Line;
  readonly linebetweenrows: Line;
  readonly linebelow: Line;
  readonly headerrow: Row;
  readonly datarow: Row;
  readonly padding: number;
  readonly hideWithHeader: readonly ('lineabove' | 'linebelow')[];
}

const bar: Row = ['|', '|', '|'];
const spaced: Row = ['', '  ', ''];

const FORMATS: Readonly<Record<string, TableFormat>> = {
  simple: {
    lineabove: ['', '-', '  ', ''],
    linebelowheader: ['', '-', '  ', ''],
    linebetweenrows: null,
    linebelow: ['', '-', '  ', ''],
    headerrow: spaced,
    datarow: spaced,
    padding: 0,
    hideWithHeader: ['lineabove', 'linebelow'],
  },
  plain: { lineabove: null, linebelowheader: null, linebetweenrows: null, linebelow: null, headerrow: spaced, datarow: spaced, padding: 0, hideWithHeader: [] },
  grid: {
    lineabove: ['+', '-', '+', '+'],
    linebelowheader: ['+', '=', '+', '+'],
    linebetweenrows: ['+', '-', '+', '+'],
    linebelow: ['+', '-', '+', '+'],
    headerrow: bar,
    datarow: bar,
    padding: 1,
    hideWithHeader: [],
  },
  fancy_grid: {
    lineabove: ['╒', '═', '╤', '╕'],
    linebelowheader: ['╞', '═', '╪', '╡'],
    linebetweenrows: ['├', '─', '┼', '┤'],
    linebelow: ['╘', '═', '╧', '╛'],
    headerrow: ['│', '│', '│'],
    datarow: ['│', '│', '│'],
    padding: 1,
    hideWithHeader: [],
  },
  github: {
    lineabove: ['|', '-', '|', '|'],
    linebelowheader: ['|', '-', '|', '|'],
    linebetweenrows: null,
    linebelow: null,
    headerrow: bar,
    datarow: bar,
    padding: 1,
    hideWithHeader: ['lineabove'],
  },
  pipe: { lineabove: 'pipe', linebelowheader: 'pipe', linebetweenrows: null, linebelow: null, headerrow: bar, datarow: bar, padding: 1, hideWithHeader: ['lineabove'] },
  orgtbl: { lineabove: null, linebelowheader: ['|', '-', '+', '|'], linebetweenrows: null, linebelow: null, headerrow: bar, datarow: bar, padding: 1, hideWithHeader: [] },
  psql: {
    lineabove: ['+', '-', '+', '+'],
    linebelowheader: ['|', '-', '+', '|'],
    linebetweenrows: null,
    linebelow: ['+', '-', '+', '+'],
    headerrow: bar,
    datarow: bar,
    padding: 1,
    hideWithHeader: [],
  },
  presto: { lineabove: null, linebelowheader: ['', '-', '+', ''], linebetweenrows: null, linebelow: null, headerrow: ['', '|', ''], datarow: ['', '|', ''], padding: 1, hideWithHeader: [] },
  rst: {
    lineabove: ['', '=', '  ', ''],
    linebelowheader: ['', '=', '  ', ''],
    linebetweenrows: null,
    linebelow: ['', '=', '  ', ''],
    headerrow: spaced,
    datarow: spaced,
    padding: 0,
    hideWithHeader: [],
  },
  tsv: { lineabove: null, linebelowheader: null, linebetweenrows: null, linebelow: null, headerrow: ['', '\t', ''], datarow: ['', '\t', ''], padding: 0, hideWithHeader: [] },
};

/** The `<fmt>` of `--tabulate-<fmt>` this es knows (`csv` is handled by the csv writer). */
export const TABLE_FORMATS: readonly string[] = Object.keys(FORMATS);

type ColType = 0 | 1 | 2 | 3 | 5; // none < bool < int < float < text (tabulate's _more_generic order)
const NONE = 0, BOOL = 1, INT = 2, FLOAT = 3, TEXT = 5;

const width = (s: string): number => [...s].length;

// Python's int() and float() on strings: surrounding whitespace and digit underscores allowed.
const INT_RE = /^\s*[-+]?\d+(_\d+)*\s*$/;
const FLOAT_RE = /^\s*[-+]?((\d+(_\d+)*)?\.?\d+(_\d+)*|\d+(_\d+)*\.)([eE][-+]?\d+(_\d+)*)?\s*$/;
const SPECIAL_RE = /^\s*[-+]?(inf|infinity|nan)\s*$/i;

function isInt(v: PyValue): boolean {
  return (typeof v === 'number' && Number.isInteger(v) && Math.abs(v) < 1e21) || (typeof v === 'string' && INT_RE.test(v));
}

function isNumber(v: PyValue): boolean {
  if (typeof v === 'number') return true;
  if (typeof v !== 'string') return false;
  if (FLOAT_RE.test(v)) return true;
  // tabulate counts only the exact spellings inf/-inf/nan among float()'s special values.
  return SPECIAL_RE.test(v) && ['inf', '-inf', 'nan'].includes(v.toLowerCase());
}

function typeOf(v: PyValue): ColType {
  if (v === null) return NONE;
  if (typeof v === 'boolean' || v === 'True' || v === 'False') return BOOL;
  if (isInt(v)) return INT;
  if (isNumber(v)) return FLOAT;
  return TEXT;
}

function toFloat(v: PyValue): number {
  if (typeof v === 'number') return v;
  const s = String(v).trim().replace(/_/g, '').toLowerCase();
  if (s.endsWith('inf') || s.endsWith('infinity')) return s.startsWith('-') ? -Infinity : Infinity;
  return s.endsWith('nan') ? NaN : Number(s);
}

function format(v: PyValue, t: ColType): string {
  if (v === null) return '';
  if (t === FLOAT) return pyFormatG(toFloat(v));
  return pyStr(v);
}

/** Digits after the decimal point (or exponent) of a number-like string; -1 for ints and text. */
function afterPoint(s: string): number {
  if (!isNumber(s) || isInt(s)) return -1;
  let pos = s.lastIndexOf('.');
  if (pos < 0) pos = s.toLowerCase().lastIndexOf('e');
  return pos >= 0 ? s.length - pos - 1 : -1;
}

const padLeft = (w: number, s: string): string => ' '.repeat(Math.max(0, w - width(s))) + s;
const padRight = (w: number, s: string): string => s + ' '.repeat(Math.max(0, w - width(s)));

function alignColumn(cells: string[], numeric: boolean, minWidth: number): string[] {
  let strings = cells;
  if (numeric) {
    const decimals = strings.map(afterPoint);
    const max = Math.max(...decimals);
    strings = strings.map((s, i) => s + ' '.repeat(max - decimals[i]!));
  } else {
    strings = strings.map((s) => s.trim());
  }
  const w = Math.max(minWidth, ...strings.map(width));
  return strings.map((s) => (numeric ? padLeft(w, s) : padRight(w, s)));
}

function buildRow(cells: readonly string[], [begin, sep, end]: Row): string {
  return (begin + cells.join(sep) + end).trimEnd();
}

function buildLine(widths: readonly number[], numeric: readonly boolean[], line: Exclude<Line, null>): string {
  if (line === 'pipe') {
    return '|' + widths.map((w, i) => (numeric[i] ? '-'.repeat(w - 1) + ':' : ':' + '-'.repeat(w - 1))).join('|') + '|';
  }
  const [begin, fill, sep, end] = line;
  return buildRow(widths.map((w) => fill.repeat(w)), [begin, sep, end]);
}

/**
 * python-tabulate's `tabulate(rows, headers=headers, tablefmt=fmt)`, without the final newline.
 *
 *   tabulate([['a', 1]], ['name', 'n'], 'simple')  →  'name      n\n------  ---\na         1'
 */
export function tabulate(rowsIn: readonly (readonly PyValue[])[], headersIn: readonly string[], fmtName: string): string {
  const fmt = FORMATS[fmtName] ?? FORMATS['simple']!;
  let rows = rowsIn.map((r) => [...r]);
  let headers = [...headersIn];
  if (fmtName === 'rst') {
    // An empty first cell would end an RST table early.
    const esc = <T extends PyValue>(v: T): T | '..' => (typeof v === 'string' && v.trim() === '' ? '..' : v);
    if (headers.length > 0) headers[0] = esc(headers[0]!) as string;
    rows = rows.map((r) => (r.length > 0 ? [esc(r[0]!), ...r.slice(1)] : r));
  }
  const ncols = Math.max(headers.length, ...rows.map((r) => r.length), 0);
  if (headers.length > 0 && headers.length < ncols) headers = [...Array(ncols - headers.length).fill(''), ...headers];
  rows = rows.map((r) => [...r, ...Array<PyValue>(ncols - r.length).fill(null)]);

  const types: ColType[] = [];
  const cols: string[][] = [];
  for (let c = 0; c < ncols; c++) {
    const values = rows.map((r) => r[c] ?? null);
    const t = values.reduce<ColType>((acc, v) => Math.max(acc, typeOf(v)) as ColType, BOOL);
    types.push(t);
    cols.push(values.map((v) => format(v, t)));
  }
  const numeric = types.map((t) => t === INT || t === FLOAT);
  const minWidths = headers.length > 0 ? headers.map((h) => width(h) + 2) : Array<number>(ncols).fill(0);
  const aligned = cols.map((c, i) => alignColumn(c, numeric[i]!, minWidths[i]!));
  const widths = aligned.map((c, i) => Math.max(minWidths[i]!, ...c.map(width)));
  const headerCells = headers.map((h, i) => (numeric[i] ? padLeft(widths[i]!, h) : padRight(widths[i]!, h)));
  const dataRows = rows.map((_, r) => aligned.map((c) => c[r]!));

  const pad = ' '.repeat(fmt.padding);
  const padded = (cells: string[]): string[] => cells.map((c) => pad + c + pad);
  const paddedWidths = widths.map((w) => w + 2 * fmt.padding);
  const hidden = headers.length > 0 ? fmt.hideWithHeader : [];
  const lines: string[] = [];
  if (fmt.lineabove && !hidden.includes('lineabove')) lines.push(buildLine(paddedWidths, numeric, fmt.lineabove));
  if (headers.length > 0) {
    lines.push(buildRow(padded(headerCells), fmt.headerrow));
    if (fmt.linebelowheader) lines.push(buildLine(paddedWidths, numeric, fmt.linebelowheader));
  }
  dataRows.forEach((row, i) => {
    lines.push(buildRow(padded(row), fmt.datarow));
    if (fmt.linebetweenrows && i < dataRows.length - 1) lines.push(buildLine(paddedWidths, numeric, fmt.linebetweenrows));
  });
  if (fmt.linebelow && !hidden.includes('linebelow')) lines.push(buildLine(paddedWidths, numeric, fmt.linebelow));
  return headers.length > 0 || rows.length > 0 ? lines.join('\n') : '';
}

/** Python's `csv.writer(delimiter=';', quoting=QUOTE_MINIMAL)`: each row ends with CRLF. */
export function csvRows(rows: readonly (readonly PyValue[])[], headers: readonly string[]): string {
  const field = (v: PyValue): string => {
    const s = v === null ? '' : pyStr(v);
    return /[;"\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const line = (r: readonly PyValue[]): string => {
    // A record of one empty field is written as "" so that it is not read back as no record.
    if (r.length === 1 && field(r[0]!) === '') return '""\r\n';
    return r.map(field).join(';') + '\r\n';
  };
  return (headers.length > 0 ? line(headers) : '') + rows.map(line).join('');
}
