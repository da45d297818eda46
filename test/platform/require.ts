/**
 * Platform tests need things a developer machine may lack (root, mkfs.xfs, loop devices). Locally
 * such a test is skipped with a loud warning; in CI (`CI=true`) a missing requirement is a failure,
 * so a broken runner can never turn the platform tests green by skipping them.
 *
 * Example (collection time: one gate test stands for the whole suite, the rest of the file runs):
 *   describe('file on XFS', async () => {
 *     const reason = await loopFsUnavailable('xfs');
 *     if (reason !== null) return platformUnavailable('needs an XFS loop filesystem', reason);
 *     ...
 *   });
 * or inside a test:
 *   it('…', async (ctx) => { if (!requirePlatform(reason)) return ctx.skip(); … });
 */
import { it } from 'vitest';

/**
 * `reason` is null when the platform is usable. Returns true when the test may run, false when it
 * should be skipped (after a loud warning); throws, failing the test, when it cannot run in CI.
 */
export function requirePlatform(reason: string | null): boolean {
  if (reason === null) return true;
  if (process.env.CI === 'true') {
    throw new Error(`Platform test cannot run in CI: ${reason}`);
  }
  console.warn(`\n!!! SKIPPING PLATFORM TEST: ${reason} (set CI=true to make this a failure) !!!\n`);
  return false;
}

/** Registers the gate test for a suite that cannot run here: skipped locally, failed in CI. */
export function platformUnavailable(title: string, reason: string): void {
  it(`${title} (${reason})`, (ctx) => {
    if (!requirePlatform(reason)) ctx.skip();
  });
}
