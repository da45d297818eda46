import { ApiError } from '../domain/errors.js';

export interface OrderBy<F extends string> {
  readonly field: F;
  readonly desc: boolean;
}

/**
 * Danube's `order_by`: comma-separated fields, `-` for descending (`+` accepted); an unknown field
 * answers 412 `Invalid order_by; Possible sort fields are: <list>`.
 */
export function parseOrderBy<F extends string>(raw: unknown, allowed: readonly F[], dflt: string): OrderBy<F>[] {
  const text = typeof raw === 'string' && raw.trim() !== '' ? raw : dflt;
  const out: OrderBy<F>[] = [];
  for (const part of text.split(',')) {
    const p = part.trim();
    const desc = p.startsWith('-');
    const name = p.replace(/^[-+]/, '');
    if (!(allowed as readonly string[]).includes(name)) {
      throw new ApiError(412, `Invalid order_by; Possible sort fields are: ${allowed.join(', ')}`);
    }
    out.push({ field: name as F, desc });
  }
  return out;
}
