// The project runs no ESLint (tsc is its only checker), so an `eslint-disable` comment silences nothing and
// tells a reader a rule exists that does not. Issue 13 item 4 removed them once; later branches brought
// them back with new files. test/ is left out for now: test/chaos/chaos.ts still has some, on lines the
// chaos work is changing.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const FOLDERS = ['src', 'bench', 'scripts', join('ui', 'src')];

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|tsx|mjs|js)$/.test(f))
    .map((f) => join(dir, f));
}

describe('lint comments', () => {
  it('no eslint-disable comment in src/, bench/, scripts/ or ui/src/', () => {
    const found: string[] = [];
    for (const folder of FOLDERS) {
      for (const file of sources(join(ROOT, folder))) {
        for (const [i, line] of readFileSync(file, 'utf8').split('\n').entries()) {
          if (line.includes('eslint-disable')) found.push(`${relative(ROOT, file)}:${i + 1}: ${line.trim()}`);
        }
      }
    }
    expect(found, `\n${found.join('\n')}\n`).toEqual([]);
  });
});
