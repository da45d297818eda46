#!/usr/bin/env node
/**
 * Builds the web UI into dist/ui, but only when its inputs changed since the last build: a hash
 * of every input file (sources, config, the versions of the bundled packages) is compared with
 * the stamp the previous build left in dist/ui/.build-stamp. A current build costs one directory
 * walk, so `npm start` stays fast; a fresh clone (no dist/ui) always builds.
 *
 * Steps when stale: type-check ui/ (tsc --noEmit), `vite build`, write a gzip sibling for every
 * compressible file (the server sends those to clients that accept gzip), then the stamp, last,
 * so an interrupted build is redone next time.
 *
 *   node ui/build.mjs           build if stale
 *   node ui/build.mjs --force   build anyway
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync, constants as zlib } from 'node:zlib';

const uiDir = dirname(fileURLToPath(import.meta.url));
const root = dirname(uiDir);
const outDir = join(root, 'dist', 'ui');
const stampFile = join(outDir, '.build-stamp');
const lockFile = join(root, 'dist', '.ui-build.lock');

/** Files whose change means a rebuild: the UI folder (not its node_modules) and shared pure code it bundles. */
function inputs() {
  const files = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      if (name === 'node_modules' || name === 'dist') continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk(uiDir);
  files.push(join(root, 'src', 'domain', 'cron.ts'));
  return files;
}

function versionOf(pkg) {
  try {
    return JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return 'missing';
  }
}

function inputHash() {
  const h = createHash('sha256');
  for (const f of inputs()) {
    h.update(relative(root, f)).update('\0').update(readFileSync(f)).update('\0');
  }
  for (const pkg of ['vite', 'preact', 'typescript']) h.update(`${pkg}@${versionOf(pkg)}\0`);
  return h.digest('hex');
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`ui build: ${[cmd, ...args].join(' ')} failed`);
    process.exit(r.status ?? 1);
  }
}

function gzipTree(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) gzipTree(p);
    else if (/\.(html|js|mjs|css|svg|json|map|txt)$/.test(name)) {
      writeFileSync(`${p}.gz`, gzipSync(readFileSync(p), { level: zlib.Z_BEST_COMPRESSION }));
    }
  }
}

/**
 * One build at a time (test files start in parallel and each makes sure the UI is built): the
 * lock is a file created exclusively; a lock older than two minutes is a crashed build's.
 */
async function lock() {
  mkdirSync(dirname(lockFile), { recursive: true });
  for (;;) {
    try {
      closeSync(openSync(lockFile, 'wx'));
      return;
    } catch {
      try {
        if (Date.now() - statSync(lockFile).mtimeMs > 120_000) rmSync(lockFile, { force: true });
      } catch {
        // Released meanwhile.
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const force = process.argv.includes('--force');
const hash = inputHash();
const isCurrent = () => existsSync(join(outDir, 'index.html')) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === hash;
const upToDate = () => {
  console.log('ui build: dist/ui is up to date');
  process.exit(0);
};
if (isCurrent() && !force) upToDate();
await lock();
process.on('exit', () => rmSync(lockFile, { force: true }));
// Another process may have built it while this one waited.
if (isCurrent() && !force) upToDate();

const started = Date.now();
run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(uiDir, 'tsconfig.json')]);
const { build } = await import('vite');
await build({ configFile: join(uiDir, 'vite.config.ts'), logLevel: 'warn' });
gzipTree(outDir);
writeFileSync(stampFile, `${hash}\n`);
console.log(`ui build: dist/ui written in ${((Date.now() - started) / 1000).toFixed(1)} s`);
