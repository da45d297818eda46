import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateCron } from '../../src/domain/cron.js';
import { msg } from '../../src/domain/messages.js';
import {
  NAME_RE,
  NOTE_FORBIDDEN,
  parseBool,
  parseIntField,
  validateFields,
  type Rule,
} from '../../src/domain/validate.js';

describe('parseBool (spec 3.6)', () => {
  it.each(['t', 'T', 'true', 'True', 'TRUE', '1', 1, true])('%j is true', (v) => {
    expect(parseBool(v)).toBe(true);
  });

  it.each(['f', 'F', 'false', 'False', 'FALSE', '0', 0, -0, false])('%j is false', (v) => {
    expect(parseBool(v)).toBe(false);
  });

  it('takes other values by Python truthiness, never failing', () => {
    expect(parseBool('yes')).toBe(true);
    expect(parseBool('no')).toBe(true);
    expect(parseBool('fAlSe')).toBe(true);
    expect(parseBool(' false')).toBe(true);
    expect(parseBool('')).toBe(false);
    expect(parseBool(2)).toBe(true);
    expect(parseBool(-1)).toBe(true);
    expect(parseBool(0.5)).toBe(true);
    expect(parseBool(null)).toBe(false);
    expect(parseBool(undefined)).toBe(false);
    // Python: empty containers are false (JavaScript would say true).
    expect(parseBool([])).toBe(false);
    expect(parseBool({})).toBe(false);
    expect(parseBool([0])).toBe(true);
    expect(parseBool({ a: 0 })).toBe(true);
  });
});

describe('parseIntField', () => {
  it.each([
    [1, 1],
    [-1, -1],
    [0, 0],
    [65536, 65536],
    ['42', 42],
    [' 42 ', 42],
    ['\t5\n', 5],
    ['+7', 7],
    ['-7', -7],
    ['007', 7],
    ['99999999999999999999', 1e20],
  ])('%j → %j', (v, n) => {
    expect(parseIntField(v)).toBe(n);
  });

  it('turns -0 into 0', () => {
    expect(Object.is(parseIntField(-0), 0)).toBe(true);
    expect(Object.is(parseIntField('-0'), 0)).toBe(true);
  });

  it.each([
    1.5,
    '1.5',
    '1.0',
    'abc',
    true,
    false,
    null,
    undefined,
    {},
    [],
    [1],
    '',
    ' ',
    '1e3',
    '0x10',
    '1 2',
    '+-1',
    '5\u00a0',
    '\u0661\u0662',
    '\uff11',
    Number.NaN,
    Number.POSITIVE_INFINITY,
  ])('%j → null', (v) => {
    expect(parseIntField(v)).toBeNull();
  });

  it('never throws, and yields null or a whole number (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.string(), fc.stringMatching(/^\s*[+-]?\d{0,400}\s*$/)), (v) => {
        const n = parseIntField(v);
        expect(n === null || Number.isInteger(n) || Math.abs(n) === Infinity).toBe(true);
      }),
    );
  });

  it('reads back every safe integer and its decimal string (property)', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        expect(parseIntField(n)).toBe(n + 0);
        expect(parseIntField(String(n))).toBe(n + 0);
      }),
    );
  });
});

describe('NAME_RE and NOTE_FORBIDDEN', () => {
  it.each(['a', 'A', '0', 'daily', 'A.b-c_d', 'x..', '9-'])('name %j is valid', (s) => {
    expect(NAME_RE.test(s)).toBe(true);
  });

  it.each(['', '.a', '-a', '_a', 'a b', 'a/b', 'á', 'a\n', 'a@b'])('name %j is invalid', (s) => {
    expect(NAME_RE.test(s)).toBe(false);
  });

  it('lists the SafeChar characters', () => {
    expect([...NOTE_FORBIDDEN].sort()).toEqual(['"', '$', '%', '&', "'", ';', '<', '>'].sort());
  });
});

const snapshotRules = {
  name: { kind: 'string', required: true, min: 1, max: 24, pattern: NAME_RE },
  note: { kind: 'string', max: 128, forbidden: NOTE_FORBIDDEN, nullAsEmpty: true },
  disk_id: { kind: 'int', min: 1, max: 6 },
  fsfreeze: { kind: 'bool' },
} satisfies Record<string, Rule>;

describe('validateFields: keys', () => {
  it('reads only the keys of the rules and returns the present ones', () => {
    const r = validateFields({ name: 'snap1', disk_id: '2', other: 'x', fsfreeze: 'false' }, snapshotRules);
    expect(r).toEqual({ ok: true, value: { name: 'snap1', disk_id: 2, fsfreeze: false } });
  });

  it('requires a required key unless the update is partial', () => {
    expect(validateFields({}, snapshotRules)).toEqual({ ok: false, errors: { name: [msg.required] } });
    expect(validateFields({}, snapshotRules, { partial: true })).toEqual({ ok: true, value: {} });
  });

  it('treats an undefined value as absent', () => {
    expect(validateFields({ name: 'a', note: undefined }, snapshotRules)).toEqual({ ok: true, value: { name: 'a' } });
  });

  it('collects the errors of every field, in the order of the rules', () => {
    const r = validateFields({ fsfreeze: 1, disk_id: 'x', note: '<' }, snapshotRules);
    expect(r).toEqual({
      ok: false,
      errors: { name: [msg.required], note: [msg.invalid], disk_id: [msg.wholeNumber] },
    });
    if (!r.ok) expect(Object.keys(r.errors)).toEqual(['name', 'note', 'disk_id']);
  });

  it('does not read inherited properties', () => {
    const rules: Record<string, Rule> = Object.fromEntries([
      ['constructor', { kind: 'string', required: true }],
      ['toString', { kind: 'int' }],
    ]);
    expect(validateFields({}, rules)).toEqual({ ok: false, errors: { constructor: [msg.required] } });
  });
});

describe('validateFields: strings', () => {
  const rules = { s: { kind: 'string', max: 3 } } satisfies Record<string, Rule>;

  it('converts numbers and refuses other types', () => {
    expect(validateFields({ s: 12 }, rules)).toEqual({ ok: true, value: { s: '12' } });
    expect(validateFields({ s: 1.5 }, rules)).toEqual({ ok: true, value: { s: '1.5' } });
    for (const v of [true, false, {}, [], ['a'], { a: 1 }]) {
      expect(validateFields({ s: v }, rules)).toEqual({ ok: false, errors: { s: [msg.invalid] } });
    }
  });

  it('handles null by the rule', () => {
    const r = (rule: Rule) => validateFields({ s: null }, { s: rule });
    expect(r({ kind: 'string', nullAsEmpty: true })).toEqual({ ok: true, value: { s: '' } });
    expect(r({ kind: 'string' })).toEqual({ ok: false, errors: { s: [msg.mayNotBeNull] } });
    // Danube: null becomes '' and an empty required field is "required".
    expect(r({ kind: 'string', required: true })).toEqual({ ok: false, errors: { s: [msg.required] } });
    expect(r({ kind: 'string', required: true, nullAsEmpty: true })).toEqual({ ok: false, errors: { s: [msg.required] } });
  });

  it('refuses an empty required string, even in a partial update', () => {
    const req = { s: { kind: 'string', required: true, min: 1 } } satisfies Record<string, Rule>;
    expect(validateFields({ s: '' }, req)).toEqual({ ok: false, errors: { s: [msg.required] } });
    expect(validateFields({ s: '' }, req, { partial: true })).toEqual({ ok: false, errors: { s: [msg.required] } });
  });

  it('skips the validators for an empty optional string', () => {
    const opt = { s: { kind: 'string', min: 2, pattern: NAME_RE } } satisfies Record<string, Rule>;
    expect(validateFields({ s: '' }, opt)).toEqual({ ok: true, value: { s: '' } });
  });

  it('checks min and max length in characters', () => {
    const r = { s: { kind: 'string', min: 2, max: 3 } } satisfies Record<string, Rule>;
    expect(validateFields({ s: 'a' }, r)).toEqual({ ok: false, errors: { s: [msg.minLength(2, 1)] } });
    expect(validateFields({ s: 'abcd' }, r)).toEqual({ ok: false, errors: { s: [msg.maxLength(3, 4)] } });
    expect(validateFields({ s: '😀😀😀' }, r)).toEqual({ ok: true, value: { s: '😀😀😀' } });
    expect(validateFields({ s: '😀😀😀😀' }, r)).toEqual({ ok: false, errors: { s: [msg.maxLength(3, 4)] } });
    const one = { s: { kind: 'string', max: 1 } } satisfies Record<string, Rule>;
    expect(validateFields({ s: 'ab' }, one)).toEqual({
      ok: false,
      errors: { s: ['Ensure this value has at most 1 character (it has 2).'] },
    });
  });

  it('gives both the length and the invalid message, length first', () => {
    const note = 'x'.repeat(129) + ';';
    expect(validateFields({ name: 'a', note }, snapshotRules)).toEqual({
      ok: false,
      errors: { note: ['Ensure this value has at most 128 characters (it has 130).', 'Invalid value.'] },
    });
    expect(validateFields({ name: 'a'.repeat(24) + '!' }, snapshotRules)).toEqual({
      ok: false,
      errors: { name: ['Ensure this value has at most 24 characters (it has 25).', 'Invalid value.'] },
    });
  });

  it.each([...NOTE_FORBIDDEN])('refuses the forbidden character %j', (c) => {
    expect(validateFields({ name: 'a', note: `a${c}b` }, snapshotRules)).toEqual({
      ok: false,
      errors: { note: [msg.invalid] },
    });
  });

  it('refuses a pattern mismatch once, even when a forbidden character also fails', () => {
    const both = { s: { kind: 'string', pattern: NAME_RE, forbidden: NOTE_FORBIDDEN } } satisfies Record<string, Rule>;
    expect(validateFields({ s: '-<' }, both)).toEqual({ ok: false, errors: { s: [msg.invalid] } });
  });

  it('ignores the g flag state of a pattern', () => {
    const g = { s: { kind: 'string', pattern: /^a+$/g } } satisfies Record<string, Rule>;
    for (let i = 0; i < 3; i++) expect(validateFields({ s: 'aa' }, g).ok).toBe(true);
  });

  it('runs the extra check before the length checks (Danube CronField)', () => {
    const rules = { schedule: { kind: 'string', required: true, max: 100, check: validateCron } } satisfies Record<string, Rule>;
    expect(validateFields({ schedule: '0 0 * * *' }, rules)).toEqual({ ok: true, value: { schedule: '0 0 * * *' } });
    const long = '0 0 * * ' + '1,'.repeat(46) + '1';
    expect(validateFields({ schedule: ` ${long}` }, rules)).toEqual({
      ok: false,
      errors: { schedule: ['Leading nor trailing spaces are allowed.', msg.maxLength(100, long.length + 1)] },
    });
  });
});

describe('validateFields: integers', () => {
  const rules = { n: { kind: 'int', min: 1, max: 6 } } satisfies Record<string, Rule>;

  it('parses numbers and numeric strings', () => {
    expect(validateFields({ n: 3 }, rules)).toEqual({ ok: true, value: { n: 3 } });
    expect(validateFields({ n: ' 6' }, rules)).toEqual({ ok: true, value: { n: 6 } });
  });

  it.each([1.5, '1.5', 'abc', true, false, [1], { n: 1 }])('%j is not a whole number', (v) => {
    expect(validateFields({ n: v }, rules)).toEqual({ ok: false, errors: { n: [msg.wholeNumber] } });
  });

  it('checks the bounds', () => {
    expect(validateFields({ n: 7 }, rules)).toEqual({ ok: false, errors: { n: [msg.maxValue(6)] } });
    expect(validateFields({ n: '0' }, rules)).toEqual({ ok: false, errors: { n: [msg.minValue(1)] } });
    expect(validateFields({ n: -5 }, rules)).toEqual({ ok: false, errors: { n: [msg.minValue(1)] } });
    const odd = { n: { kind: 'int', min: 5, max: 1 } } satisfies Record<string, Rule>;
    expect(validateFields({ n: 3 }, odd)).toEqual({ ok: false, errors: { n: [msg.maxValue(1), msg.minValue(5)] } });
  });

  it('answers a huge value with the max message, and refuses it when unbounded', () => {
    expect(validateFields({ n: '99999999999999999999' }, rules)).toEqual({ ok: false, errors: { n: [msg.maxValue(6)] } });
    expect(validateFields({ n: '-' + '9'.repeat(400) }, rules)).toEqual({ ok: false, errors: { n: [msg.minValue(1)] } });
    const free = { n: { kind: 'int' } } satisfies Record<string, Rule>;
    expect(validateFields({ n: 2 ** 53 }, free)).toEqual({ ok: false, errors: { n: [msg.wholeNumber] } });
    expect(validateFields({ n: 2 ** 53 - 1 }, free)).toEqual({ ok: true, value: { n: 2 ** 53 - 1 } });
  });

  it('gives "required" for an empty value of a required field, as Danube', () => {
    const req = { n: { kind: 'int', required: true } } satisfies Record<string, Rule>;
    for (const v of [null, '', [], {}]) {
      expect(validateFields({ n: v }, req)).toEqual({ ok: false, errors: { n: [msg.required] } });
      expect(validateFields({ n: v }, req, { partial: true })).toEqual({ ok: false, errors: { n: [msg.required] } });
    }
  });

  it('gives "Enter a whole number." for an empty value of an optional field', () => {
    for (const v of [null, '', [], {}]) {
      expect(validateFields({ n: v }, rules)).toEqual({ ok: false, errors: { n: [msg.wholeNumber] } });
    }
  });
});

describe('validateFields: booleans', () => {
  const rules = { b: { kind: 'bool', required: true } } satisfies Record<string, Rule>;

  it('parses by the boolean rule and never fails on a present value', () => {
    expect(validateFields({ b: 'false' }, rules)).toEqual({ ok: true, value: { b: false } });
    expect(validateFields({ b: 'True' }, rules)).toEqual({ ok: true, value: { b: true } });
    expect(validateFields({ b: 'yes' }, rules)).toEqual({ ok: true, value: { b: true } });
    expect(validateFields({ b: 0 }, rules)).toEqual({ ok: true, value: { b: false } });
    expect(validateFields({ b: null }, rules)).toEqual({ ok: true, value: { b: false } });
    expect(validateFields({ b: [] }, rules)).toEqual({ ok: true, value: { b: false } });
  });

  it('requires a required boolean that is absent', () => {
    expect(validateFields({}, rules)).toEqual({ ok: false, errors: { b: [msg.required] } });
  });
});

describe('validateFields: properties', () => {
  it('never throws and returns only rule keys', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('name', 'note', 'disk_id', 'fsfreeze', 'x'), fc.anything()), fc.boolean(), (input, partial) => {
        const r = validateFields(input, snapshotRules, { partial });
        const keys = Object.keys(r.ok ? r.value : r.errors);
        for (const k of keys) expect(Object.keys(snapshotRules)).toContain(k);
        if (!r.ok) for (const list of Object.values(r.errors)) expect(list.length).toBeGreaterThan(0);
      }),
    );
  });
});
