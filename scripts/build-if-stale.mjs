#!/usr/bin/env node
/**
 * `npm start`'s build step (prestart): builds only what changed, cheaply when nothing did.
 *
 * `tsc -b` alone would find its outputs current, but loading the compiler to find that out costs
 * seconds on a busy machine. So this first compares modification times: when no file or folder
 * under src/ and bench/, nor tsconfig.json or package-lock.json, is newer than the stamp the last
 * compile left, tsc is not started at all. Anything newer (an edit, a new or deleted file: its
 * folder's time changes, a checkout) runs `tsc -b`, which decides precisely. Then the UI build
 * (ui/build.mjs), which keys on a hash of its inputs, runs in this same process.
 *
 *   node scripts/build-if-stale.mjs
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const stamp = join(root, 'dist', '.tsc-stamp');

/** The newest modification time among `paths` and everything below them (0 for a missing path). */
function newest(paths) {
  let max = 0;
  const visit = (p) => {
    let st;
    try {
      st = statSync(p);
    } catch {
      return;
    }
    max = Math.max(max, st.mtimeMs);
    if (st.isDirectory()) for (const name of readdirSync(p)) visit(join(p, name));
  };
  for (const p of paths) visit(p);
  return max;
}

const inputs = ['src', 'bench', 'tsconfig.json', 'package-lock.json'].map((p) => join(root, p));
const built = newest([stamp]);
if (built === 0 || newest(inputs) >= built) {
  const started = Date.now();
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-b', join(root, 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
  // Written after a successful compile only, dated when the compile began: a file saved while tsc
  // ran is newer than the stamp, so the next start compiles again.
  writeFileSync(stamp, `${new Date(started).toISOString()}\n`);
  utimesSync(stamp, started / 1000, started / 1000);
}
await import('../ui/build.mjs');
