/**
 * `npm start`'s build step (scripts/build-if-stale.mjs) starts tsc only when a source, a folder of
 * sources, tsconfig.json or the lock file is newer than its stamp, and always hands over to the UI
 * build. Run on a copy of the script in a scratch tree whose `tsc` and `ui/build.mjs` only record
 * that they ran (the real ones are covered by build-incremental.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'build-if-stale.mjs');

describe('scripts/build-if-stale.mjs', () => {
  let root: string;
  const log = () => join(root, 'ran.log');

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'esnap-build-if-stale-'));
    for (const d of ['scripts', 'src/domain', 'bench', 'ui', 'dist', 'node_modules/typescript/bin']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync(SCRIPT, join(root, 'scripts', 'build-if-stale.mjs'));
    const record = (what: string) => `require('node:fs').appendFileSync(${JSON.stringify(join(root, 'ran.log'))}, ${JSON.stringify(`${what}\n`)});`;
    writeFileSync(join(root, 'node_modules/typescript/bin/tsc'), `${record('tsc')}\n`);
    writeFileSync(join(root, 'ui', 'build.mjs'), `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(join(root, 'ran.log'))}, 'ui\\n');\n`);
    writeFileSync(join(root, 'src', 'domain', 'a.ts'), 'export const a = 1;\n');
    writeFileSync(join(root, 'tsconfig.json'), '{}\n');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** Runs the script; returns what ran, in order. */
  function run(): string[] {
    rmSync(log(), { force: true });
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-if-stale.mjs')], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return readFileSync(log(), 'utf8').split('\n').filter(Boolean);
  }
  it('compiles on the first run (no stamp), then not while nothing changes; the UI build runs each time', () => {
    expect(run()).toEqual(['tsc', 'ui']);
    expect(run()).toEqual(['ui']);
    expect(run()).toEqual(['ui']);
  });

  it('compiles again after an edit, a new or deleted file, or a tsconfig change, once each', () => {
    writeFileSync(join(root, 'src', 'domain', 'a.ts'), 'export const a = 2;\n');
    expect(run()).toEqual(['tsc', 'ui']);
    expect(run()).toEqual(['ui']);
    writeFileSync(join(root, 'src', 'domain', 'b.ts'), 'export const b = 2;\n');
    expect(run()).toEqual(['tsc', 'ui']);
    expect(run()).toEqual(['ui']);
    rmSync(join(root, 'src', 'domain', 'b.ts'));
    expect(run()).toEqual(['tsc', 'ui']);
    expect(run()).toEqual(['ui']);
    writeFileSync(join(root, 'tsconfig.json'), '{ }\n');
    expect(run()).toEqual(['tsc', 'ui']);
    expect(run()).toEqual(['ui']);
  });

  it('does not write the stamp when tsc fails, so the next start tries again', () => {
    writeFileSync(join(root, 'node_modules/typescript/bin/tsc'), `require('node:fs').appendFileSync(${JSON.stringify(join(root, 'ran.log'))}, 'tsc\\n'); process.exit(2);\n`);
    writeFileSync(join(root, 'src', 'domain', 'a.ts'), 'export const a = 3;\n');
    rmSync(log(), { force: true });
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-if-stale.mjs')], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(readFileSync(log(), 'utf8')).toBe('tsc\n');
    writeFileSync(join(root, 'node_modules/typescript/bin/tsc'), `require('node:fs').appendFileSync(${JSON.stringify(join(root, 'ran.log'))}, 'tsc\\n');\n`);
    expect(run()).toEqual(['tsc', 'ui']);
  });
});
