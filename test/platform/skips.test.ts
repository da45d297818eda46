/**
 * No test may skip itself past the CI=true rule: every platform skip goes through
 * requirePlatform/platformUnavailable (test/platform/require.ts), which fails in CI. This scans
 * the test sources for vitest's own skip forms and allows only those that rule covers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');

/** Lines that skip without the helper. A `ctx.skip()` is fine on the line of a requirePlatform check. */
export function bypassingSkips(text: string): string[] {
  const found: string[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    const code = line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '');
    const allowed =
      // ESNAP_TEST_DB picks databases on purpose; that is a selection, not a missing platform.
      /\.runIf\(testDatabases\(\)/.test(code) ||
      (/\bctx\.skip\(\)/.test(code) && /requirePlatform\(/.test(code));
    if (allowed) continue;
    if (/\.(skipIf|runIf|skip|todo)\s*\(|\bctx\.skip\b|\.skip\./.test(code)) found.push(`${i + 1}: ${line.trim()}`);
  }
  return found;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

describe('platform skips', () => {
  it('every skip in test/ goes through the platform requirement helper', () => {
    const offenders: string[] = [];
    for (const file of sources(join(ROOT, 'test'))) {
      const rel = relative(ROOT, file);
      // The helper itself, and this file's own examples.
      if (rel === join('test', 'platform', 'require.ts') || rel === join('test', 'platform', 'skips.test.ts')) continue;
      for (const hit of bypassingSkips(readFileSync(file, 'utf8'))) offenders.push(`${rel}:${hit}`);
    }
    expect(offenders).toEqual([]);
  });

  it('recognises the forms that bypass the rule (the scan above can fail)', () => {
    expect(bypassingSkips("it.skipIf(!hasOpenssl)('x', () => {});")).toHaveLength(1);
    expect(bypassingSkips("describe.runIf(found)('x', () => {});")).toHaveLength(1);
    expect(bypassingSkips('  if (cond) return ctx.skip();')).toHaveLength(1);
    expect(bypassingSkips("it.skip('x', () => {});")).toHaveLength(1);
    expect(bypassingSkips("describe.skip('x', () => {});")).toHaveLength(1);
    expect(bypassingSkips("it.todo('x');")).toHaveLength(1);
    expect(bypassingSkips('  if (!requirePlatform(reason)) return ctx.skip();')).toEqual([]);
    expect(bypassingSkips("describe.runIf(testDatabases().includes('sqlite'))('x', () => {});")).toEqual([]);
  });
});
