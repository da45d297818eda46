import { createHash, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDummyTaskId, makeDummyTaskId, makeTaskId, parseTaskId, parseTaskIdLoose, taskLogType, type TaskType } from '../../src/domain/taskid.js';

const UUID = '6c2e0f4a-1b2c-4d3e-8f9a-0123456789ab';

describe('makeTaskId (spec 7.1)', () => {
  it('builds <user><tt><owner><tg><dc>-<first 23 chars of the UUID>', () => {
    expect(makeTaskId({ userId: 1, type: 'e', ownerId: 5, dcBound: true, dcId: 1 }, UUID)).toBe('1e5d1-6c2e0f4a-1b2c-4d3e-8f9a');
    expect(makeTaskId({ userId: 7, type: 'a', ownerId: 12, dcBound: true, dcId: 3 }, UUID)).toBe('7a12d3-6c2e0f4a-1b2c-4d3e-8f9a');
    expect(makeTaskId({ userId: 1, type: 'i', ownerId: 1, dcBound: false, dcId: 1 }, UUID)).toBe('1i1u1-6c2e0f4a-1b2c-4d3e-8f9a');
  });

  it('lowercases the UUID and refuses anything else', () => {
    const p = { userId: 1, type: 'e' as const, ownerId: 1, dcBound: true, dcId: 1 };
    expect(makeTaskId(p, UUID.toUpperCase())).toBe('1e1d1-6c2e0f4a-1b2c-4d3e-8f9a');
    expect(() => makeTaskId(p, 'not-a-uuid')).toThrow(RangeError);
    expect(() => makeTaskId(p, '6c2e0f4a1b2c4d3e8f9a0123456789ab')).toThrow(RangeError);
  });

  it('refuses ids that are not natural numbers', () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => makeTaskId({ userId: bad, type: 'e', ownerId: 1, dcBound: true, dcId: 1 }, UUID)).toThrow(RangeError);
      expect(() => makeTaskId({ userId: 1, type: 'e', ownerId: bad, dcBound: true, dcId: 1 }, UUID)).toThrow(RangeError);
      expect(() => makeDummyTaskId({ userId: 1, ownerId: 1, dcBound: true, dcId: bad }, UUID)).toThrow(RangeError);
    }
  });
});

describe('makeDummyTaskId', () => {
  it('puts the md5 mark of the user id in the first suffix group (user 1 → 6f75849b)', () => {
    expect(makeDummyTaskId({ userId: 1, ownerId: 1, dcBound: true, dcId: 1 }, UUID)).toBe('1d1d1-6f75849b-1b2c-4d3e-8f9a');
  });

  it('hashes the creator, not the owner', () => {
    const mark = createHash('md5').update('7').digest('hex').slice(-8);
    expect(makeDummyTaskId({ userId: 7, ownerId: 3, dcBound: false, dcId: 2 }, UUID)).toBe(`7d3u2-${mark}-1b2c-4d3e-8f9a`);
  });
});

describe('parseTaskId', () => {
  it('reads the parts back', () => {
    expect(parseTaskId('1e5d1-6c2e0f4a-1b2c-4d3e-8f9a')).toEqual({ userId: 1, type: 'e', ownerId: 5, dcBound: true, dcId: 1 });
    expect(parseTaskId('7a12u3-6c2e0f4a-1b2c-4d3e-8f9a')).toEqual({ userId: 7, type: 'a', ownerId: 12, dcBound: false, dcId: 3 });
    for (const t of ['e', 'a', 'm', 'i', 'd', 'f']) expect(parseTaskId(`1${t}1d1-6c2e0f4a-1b2c-4d3e-8f9a`)?.type).toBe(t);
  });

  it.each([
    '1e1-6c2e0f4a-1b2c-4d3e-8f9a', // old format without tg/dc
    '1x5d1-6c2e0f4a-1b2c-4d3e-8f9a',
    '1e5x1-6c2e0f4a-1b2c-4d3e-8f9a',
    '1e5d1-6C2E0F4A-1b2c-4d3e-8f9a',
    '1e5d1-6c2e0f4a-1b2c-4d3e',
    '1e5d1-6c2e0f4a-1b2c-4d3e-8f9a-0123456789ab',
    ' 1e5d1-6c2e0f4a-1b2c-4d3e-8f9a',
    '1e5d1-6c2e0f4a-1b2c-4d3e-8f9a\n',
    'e5d1-6c2e0f4a-1b2c-4d3e-8f9a',
    '1e5d-6c2e0f4a-1b2c-4d3e-8f9a',
    '-1e5d1-6c2e0f4a-1b2c-4d3e-8f9a',
    '99999999999999999999e5d1-6c2e0f4a-1b2c-4d3e-8f9a',
    '',
  ])('refuses %j', (id) => {
    expect(parseTaskId(id)).toBeNull();
  });

  it('round-trips every id it makes (property)', () => {
    const parts = fc.record({
      userId: fc.nat(),
      type: fc.constantFrom<TaskType>('e', 'a', 'm', 'i', 'd', 'f'),
      ownerId: fc.nat(),
      dcBound: fc.boolean(),
      dcId: fc.nat(),
    });
    fc.assert(
      fc.property(parts, fc.uuid({ version: 4 }), (p, uuid) => {
        expect(parseTaskId(makeTaskId(p, uuid))).toEqual(p);
        const { type: _type, ...rest } = p;
        expect(parseTaskId(makeDummyTaskId(rest, uuid))).toEqual({ ...rest, type: 'd' });
      }),
    );
  });
});

describe('isDummyTaskId', () => {
  it('recognises dummy ids by the mark of their creator', () => {
    expect(isDummyTaskId('1d1d1-6f75849b-1b2c-4d3e-8f9a')).toBe(true);
    expect(isDummyTaskId(makeDummyTaskId({ userId: 42, ownerId: 7, dcBound: true, dcId: 2 }, randomUUID()))).toBe(true);
    expect(isDummyTaskId('1e5d1-6c2e0f4a-1b2c-4d3e-8f9a')).toBe(false);
    expect(isDummyTaskId('2d1d1-6f75849b-1b2c-4d3e-8f9a')).toBe(false);
    expect(isDummyTaskId('1d1-6f75849b-1b2c-4d3e-8f9a')).toBe(false);
    expect(isDummyTaskId('garbage')).toBe(false);
  });

  it('never marks a real task id made from a random UUID (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1000 }), fc.uuid({ version: 4 }), (userId, uuid) => {
        const id = makeTaskId({ userId, type: 'e', ownerId: userId, dcBound: true, dcId: 1 }, uuid);
        const mark = createHash('md5').update(String(userId)).digest('hex').slice(-8);
        expect(isDummyTaskId(id)).toBe(uuid.startsWith(mark));
      }),
    );
  });
});

describe("Danube's task-log task_type and its id check", () => {
  it("builds '%d%02d' from the DC-unbound flag and the type", () => {
    expect(taskLogType('1e1d1-6c2e0f4a-1b2c-4d3e-8f9a')).toBe(1);
    expect(taskLogType('1d1d1-6f75849b-1b2c-4d3e-8f9a')).toBe(0);
    expect(taskLogType('7a1d1-6c2e0f4a-1b2c-4d3e-8f9a')).toBe(2);
    expect(taskLogType('1e1u1-6c2e0f4a-1b2c-4d3e-8f9a')).toBe(101);
    expect(taskLogType('1d1u1-6f75849b-1b2c-4d3e-8f9a')).toBe(100);
    expect(taskLogType('7a1u1-6c2e0f4a-1b2c-4d3e-8f9a')).toBe(102);
    expect(taskLogType('garbage')).toBeNull();
  });

  it('accepts any characters of the right group lengths, as is_valid_task_id does', () => {
    expect(parseTaskIdLoose('1e1d1-ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ')).toEqual({ userId: 1, type: 'e', ownerId: 1, dcBound: true, dcId: 1 });
    for (const bad of ['1e1d1-ZZZZZZZ-ZZZZ-ZZZZ-ZZZZ', '1x1d1-ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ', '1e1q1-ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ', '1ee1d1-ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ', '1e1-ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ']) {
      expect(parseTaskIdLoose(bad), bad).toBeNull();
    }
  });
});
