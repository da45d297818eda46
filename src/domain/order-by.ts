import { ApiError } from './errors.js';

export interface OrderBy<F extends string> {
  readonly field: F;
  readonly desc: boolean;
}

/**
 * Danube's `order_by`: comma-separated fields, `-` or `+` for descending (Danube's `_get_db_field`
 * treats both alike; a literal `+` in a query string decodes to a space and sorts ascending);
 * empty means the default; an unknown field answers 412 `Invalid order_by; Possible sort fields
 * are: <list>`, the list in the order given (Danube's set order).
 */
export function parseOrderBy<F extends string>(raw: unknown, allowed: readonly F[], dflt: string): OrderBy<F>[] {
  const text = typeof raw === 'string' && raw !== '' ? raw : dflt;
  const out: OrderBy<F>[] = [];
  for (const part of text.split(',')) {
    const p = part.trim();
    const desc = p.startsWith('-') || p.startsWith('+');
    const name = p.replace(/^[-+]/, '');
    if (!(allowed as readonly string[]).includes(name)) {
      throw new ApiError(412, `Invalid order_by; Possible sort fields are: ${allowed.join(', ')}`);
    }
    out.push({ field: name as F, desc });
  }
  return out;
}
