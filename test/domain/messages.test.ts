import { describe, expect, it } from 'vitest';
import { msg } from '../../src/domain/messages.js';

describe('msg (spec 6.1)', () => {
  it('has the exact constant texts', () => {
    expect(msg.required).toBe('This field is required.');
    expect(msg.invalid).toBe('Invalid value.');
    expect(msg.wholeNumber).toBe('Enter a whole number.');
    expect(msg.invalidData).toBe('Invalid data');
    expect(msg.mayNotBeNull).toBe('This field may not be null.');
  });

  it('formats max length, singular only for a limit of 1', () => {
    expect(msg.maxLength(24, 30)).toBe('Ensure this value has at most 24 characters (it has 30).');
    expect(msg.maxLength(1, 2)).toBe('Ensure this value has at most 1 character (it has 2).');
    expect(msg.maxLength(0, 1)).toBe('Ensure this value has at most 0 characters (it has 1).');
  });

  it('formats min length, singular only for a limit of 1', () => {
    expect(msg.minLength(2, 1)).toBe('Ensure this value has at least 2 characters (it has 1).');
    expect(msg.minLength(1, 0)).toBe('Ensure this value has at least 1 character (it has 0).');
  });

  it('formats integer bounds', () => {
    expect(msg.maxValue(6)).toBe('Ensure this value is less than or equal to 6.');
    expect(msg.minValue(1)).toBe('Ensure this value is greater than or equal to 1.');
    expect(msg.minValue(0)).toBe('Ensure this value is greater than or equal to 0.');
    expect(msg.maxValue(65536)).toBe('Ensure this value is less than or equal to 65536.');
  });
});
