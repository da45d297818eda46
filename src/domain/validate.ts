/**
 * Field parsing with Danube's rules (spec 3.6, 6.1, 6.2), modelled on Danube's serializer fields
 * (`api/fields.py`, a fork of Django REST framework 2):
 *
 * - a field collects every validator message, it does not stop at the first one; the order is
 *   Danube's: an extra check (CronField's cron validator), then min length, max length, then the
 *   regular expression / safe-character check;
 * - an empty value (`''`, or null turned into `''`) of a required field is `This field is
 *   required.`, even in a partial update (Danube fixes `allow_empty` when the field is built), and
 *   the validators are skipped for an empty value of an optional field;
 * - unknown keys are ignored.
 *
 * Where Danube silently accepts a value of the wrong type (it turns `true` into the string
 * `'True'`), esnap answers with the field messages instead (spec, "esnap's decisions").
 */
import { msg } from './messages.js';

export type FieldErrors = Record<string, string[]>;

/** Snapshot and definition names (spec 6.2). */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Characters refused by Danube's SafeCharField (`note`, `desc`). */
export const NOTE_FORBIDDEN = '<>%$&;\'"';

const TRUE_STRINGS: ReadonlySet<string> = new Set(['t', 'T', 'true', 'True', 'TRUE', '1']);
const FALSE_STRINGS: ReadonlySet<string> = new Set(['f', 'F', 'false', 'False', 'FALSE', '0']);

/**
 * Danube's boolean rule (spec 3.6), used by esnap for every boolean, query strings included:
 * `true`/`false`, the strings and numbers of the table, and anything else by Python truthiness
 * (so `[]`, `{}`, `''`, `0` and null are false, `'no'` is true). It never fails.
 *
 * @example parseBool('false') === false; parseBool('yes') === true; parseBool([]) === false
 */
export function parseBool(v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    if (TRUE_STRINGS.has(v)) return true;
    if (FALSE_STRINGS.has(v)) return false;
    return v.length > 0;
  }
  // Python's bool(): only zero is false (NaN cannot come from JSON or a query string).
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'bigint') return v !== 0n;
  if (v === null || v === undefined) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

// Danube runs `int(str(value))` on Python 2: only ASCII whitespace around an optional sign and
// ASCII digits (anything non-ASCII fails to encode and is refused).
const INT_STRING = /^[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*$/;

/**
 * An integer field's value: integral numbers, or strings of an optional sign and digits with
 * surrounding whitespace. Anything else (`1.5`, `'1.5'`, `'abc'`, `true`, null, objects, arrays,
 * `''`) is null. A digit string too large for a double still parses (to a huge number or
 * Infinity), so that a bounded field answers with its max-value message, as Danube does.
 *
 * @example parseIntField(' 42 ') === 42; parseIntField('4.2') === null
 */
export function parseIntField(v: unknown): number | null {
  if (typeof v === 'number') return Number.isInteger(v) ? v + 0 : null; // + 0 turns -0 into 0
  if (typeof v !== 'string') return null;
  const m = INT_STRING.exec(v);
  return m ? Number(m[1]) + 0 : null;
}

export type StringRule = {
  kind: 'string';
  required?: boolean;
  min?: number;
  max?: number;
  pattern?: RegExp;
  forbidden?: string;
  /** Null is taken as `''` (Danube's behaviour for every string field). */
  nullAsEmpty?: boolean;
  /**
   * An extra validator run before the length checks, like Danube's CronField, whose cron message
   * comes before its max-length message. Returns a message or null.
   */
  check?: (value: string) => string | null;
};
export type IntRule = { kind: 'int'; required?: boolean; min?: number; max?: number };
export type BoolRule = { kind: 'bool'; required?: boolean };
export type Rule = StringRule | IntRule | BoolRule;

export type ParsedField<R extends Rule> = R extends { kind: 'string' }
  ? string
  : R extends { kind: 'int' }
    ? number
    : boolean;

export type FieldValues<T extends Record<string, Rule>> = { [K in keyof T]?: ParsedField<T[K]> };

export type ValidationResult<T extends Record<string, Rule>> =
  | { ok: true; value: FieldValues<T> }
  | { ok: false; errors: FieldErrors };

type Outcome<V> = { value: V } | { errors: string[] };

/**
 * Validates the keys of `input` named in `rules`, in the order of `rules`. An absent key is
 * skipped, or is `This field is required.` when the rule is required and the update is not
 * partial. The value holds only the keys that were present.
 *
 * @example
 * const r = validateFields(body, {
 *   note: { kind: 'string', max: 128, forbidden: NOTE_FORBIDDEN, nullAsEmpty: true },
 *   disk_id: { kind: 'int', min: 1, max: 6 },
 * });
 * if (!r.ok) return fail(400, r.errors); // { note: ['Invalid value.'] }
 */
export function validateFields<T extends Record<string, Rule>>(
  input: Record<string, unknown>,
  rules: T,
  opts?: { partial?: boolean },
): ValidationResult<T> {
  const partial = opts?.partial === true;
  const value: Record<string, string | number | boolean> = {};
  const errors: FieldErrors = {};
  let failed = false;

  for (const key of Object.keys(rules)) {
    const rule = rules[key] as Rule;
    // Own keys only: a body like {"constructor": …} must not reach Object.prototype.
    const raw = Object.prototype.hasOwnProperty.call(input, key) ? input[key] : undefined;
    if (raw === undefined) {
      if (rule.required === true && !partial) {
        errors[key] = [msg.required];
        failed = true;
      }
      continue;
    }
    const out: Outcome<string | number | boolean> =
      rule.kind === 'string' ? stringField(raw, rule) : rule.kind === 'int' ? intField(raw, rule) : boolField(raw);
    if ('errors' in out) {
      errors[key] = out.errors;
      failed = true;
    } else {
      value[key] = out.value;
    }
  }

  if (failed) return { ok: false, errors };
  return { ok: true, value: value as FieldValues<T> };
}

function stringField(raw: unknown, rule: StringRule): Outcome<string> {
  let s: string;
  if (raw === null) {
    if (rule.nullAsEmpty === true) s = '';
    else return { errors: [rule.required === true ? msg.required : msg.mayNotBeNull] };
  } else if (typeof raw === 'string') {
    s = raw;
  } else if (typeof raw === 'number' && Number.isFinite(raw)) {
    s = String(raw);
  } else {
    return { errors: [msg.invalid] };
  }

  if (s === '') return rule.required === true ? { errors: [msg.required] } : { value: s };

  const errors: string[] = [];
  if (rule.check) {
    const m = rule.check(s);
    if (m !== null) errors.push(m);
  }
  const length = codePointLength(s);
  if (rule.min !== undefined && length < rule.min) errors.push(msg.minLength(rule.min, length));
  if (rule.max !== undefined && length > rule.max) errors.push(msg.maxLength(rule.max, length));
  const badPattern = rule.pattern !== undefined && s.search(rule.pattern) === -1;
  const badChar = rule.forbidden !== undefined && hasAnyChar(s, rule.forbidden);
  if (badPattern || badChar) errors.push(msg.invalid);
  return errors.length > 0 ? { errors } : { value: s };
}

function intField(raw: unknown, rule: IntRule): Outcome<number> {
  // Danube's EMPTY_VALUES become None: "required" on a required field.
  if (rule.required === true && isEmptyValue(raw)) return { errors: [msg.required] };
  const n = parseIntField(raw);
  if (n === null) return { errors: [msg.wholeNumber] };
  const errors: string[] = [];
  // Danube's IntegerField adds its max validator before its min validator.
  if (rule.max !== undefined && n > rule.max) errors.push(msg.maxValue(rule.max));
  if (rule.min !== undefined && n < rule.min) errors.push(msg.minValue(rule.min));
  if (errors.length === 0 && !Number.isSafeInteger(n)) errors.push(msg.wholeNumber);
  return errors.length > 0 ? { errors } : { value: n };
}

function boolField(raw: unknown): Outcome<boolean> {
  // Spec 3.6: booleans never fail; null is false by truthiness, as in Danube.
  return { value: parseBool(raw) };
}

function isEmptyValue(v: unknown): boolean {
  if (v === null || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === 'object' && v !== null && Object.keys(v).length === 0;
}

/** Length in characters (code points), as Python counts a unicode string. */
function codePointLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function hasAnyChar(s: string, chars: string): boolean {
  for (const c of chars) if (s.includes(c)) return true;
  return false;
}
