/**
 * Temp folders for the tests of one describe block (or file), removed once they have all run.
 *
 * Call it before registering other after-hooks: vitest runs after-hooks last-registered first, so
 * servers stopped in a later afterAll are gone before their folders are removed.
 *
 * Example:
 *   describe('…', () => {
 *     const tempDir = useTempDirs();
 *     it('…', async () => { const dir = await tempDir('esnap-x-'); … });
 *   });
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

export function useTempDirs(): (prefix: string) => Promise<string> {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  return async (prefix) => {
    const d = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
}
