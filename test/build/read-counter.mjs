// Preloaded (NODE_OPTIONS=--import) into every node process of a build: appends to
// $READ_COUNTER_LOG each TypeScript file under src/ the process read, so a test can tell a build
// that re-read the sources from one that found them current.
import fs from 'node:fs';
import { sep } from 'node:path';

const log = process.env.READ_COUNTER_LOG;
const marker = `${sep}src${sep}`;
const original = fs.readFileSync;
fs.readFileSync = function readFileSync(path, ...rest) {
  const p = String(path);
  if (log && p.includes(marker) && p.endsWith('.ts') && !p.includes('node_modules')) fs.appendFileSync(log, `${p}\n`);
  return original.call(this, path, ...rest);
};
