/**
 * The generic field messages of Danube's serializers (spec 6.1). They are part of the wire
 * contract: clients match on them, so the text must not change, punctuation included.
 *
 * The length messages are Django 1.8's `MinLengthValidator`/`MaxLengthValidator` texts, which use
 * `ungettext` on the limit: `character` when the limit is 1, `characters` otherwise (0 included).
 */

function characters(n: number): string {
  return n === 1 ? 'character' : 'characters';
}

export const msg = {
  required: 'This field is required.',
  invalid: 'Invalid value.',
  wholeNumber: 'Enter a whole number.',
  /** Under `non_field_errors` when the body is not a JSON object. */
  invalidData: 'Invalid data',
  /**
   * Not a Danube message (Danube turns a null string into `''`): esnap uses it for an optional
   * string field whose rule refuses null (see `validateFields`).
   */
  mayNotBeNull: 'This field may not be null.',
  /** `msg.maxLength(24, 30)` → `Ensure this value has at most 24 characters (it has 30).` */
  maxLength(n: number, m: number): string {
    return `Ensure this value has at most ${n} ${characters(n)} (it has ${m}).`;
  },
  /** `msg.minLength(2, 1)` → `Ensure this value has at least 2 characters (it has 1).` */
  minLength(n: number, m: number): string {
    return `Ensure this value has at least ${n} ${characters(n)} (it has ${m}).`;
  },
  maxValue(n: number): string {
    return `Ensure this value is less than or equal to ${n}.`;
  },
  minValue(n: number): string {
    return `Ensure this value is greater than or equal to ${n}.`;
  },
} as const;
