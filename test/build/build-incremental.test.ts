/**
 * `npm start` builds first (prestart); with nothing changed that build must do no work, so a second
 * start answers in seconds: tsc in build mode finds its outputs current from time stamps without
 * reading the sources, and the UI build finds its input hash equal to the stamp. Checked by what the
 * build reads and writes, not by timing (timings vary with the machine).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const DOMAIN_CRON = join(ROOT, 'src', 'domain', 'cron.ts'); // the one src/ file the UI bundles and hashes

function build(log: string): string {
  const r = spawnSync('npm', ['run', 'build', '--silent'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, READ_COUNTER_LOG: log, NODE_OPTIONS: `--import=${join(import.meta.dirname, 'read-counter.mjs')}` },
  });
  if (r.status !== 0) throw new Error(`npm run build failed (${r.status}): ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Every file under dist/ with its modification time. */
function distTimes(): Map<string, number> {
  const dist = join(ROOT, 'dist');
  const times = new Map<string, number>();
  for (const f of readdirSync(dist, { recursive: true, encoding: 'utf8' })) {
    const st = statSync(join(dist, f));
    if (st.isFile()) times.set(relative(dist, join(dist, f)), st.mtimeMs);
  }
  return times;
}

describe('npm run build with nothing changed', () => {
  it('reads no TypeScript source beyond what the UI hashes, writes nothing, says the UI is up to date', { timeout: 300_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'esnap-build-'));
    try {
      build(join(dir, 'first.log')); // whatever is stale (normally nothing after pretest) is built here
      const before = distTimes();
      const out = build(join(dir, 'second.log'));
      const reads = new Set(readFileSync(join(dir, 'second.log'), { encoding: 'utf8', flag: 'a+' }).split('\n').filter(Boolean));
      expect([...reads].filter((f) => f !== DOMAIN_CRON)).toEqual([]);
      expect(out).toContain('ui build: dist/ui is up to date');
      expect(distTimes()).toEqual(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
