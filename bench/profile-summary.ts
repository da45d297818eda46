/**
 * Summarises a `node --cpu-prof` profile: self time by function (top N), and by the groups
 * bench/README.md reports (SQLite, JSON, HTTP, Kysely, esnap, GC, …).
 * Run: node dist/bench/profile-summary.js <file.cpuprofile> [top]
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: profile-summary.js <file.cpuprofile> [top]\n');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
let total = 0;
let idle = 0;
const fns = new Map<string, number>();
const groups = new Map<string, number>();
function group(n: Node): string {
  const { functionName: f, url } = n.callFrame;
  if (f === '(garbage collector)') return 'GC';
  if (f === '(program)') return 'V8/native (program)';
  if (url.includes('better-sqlite3')) return 'better-sqlite3 (JS side)';
  if (url === '' && /^(all|get|run|prepare|iterate|raw|pluck)$/.test(f)) return 'better-sqlite3 native (SQLite + row objects)';
  if (url.includes('/pg/') || url.includes('pg-protocol') || url.includes('pg-pool')) return 'node-postgres';
  if (url.includes('/kysely/')) return 'Kysely (build/compile/execute)';
  if (url.includes('/fastify') || url.includes('find-my-way') || url.includes('light-my-request') || url.includes('avvio') || url.includes('/pino')) return 'Fastify/pino';
  if (f === 'stringify' || f === 'parse') return 'JSON.stringify/parse';
  if (url.startsWith('node:') || url === '') return `node core / native (${f || 'anonymous'})`.slice(0, 60);
  if (url.includes('/dist/src/')) return `esnap ${url.split('/dist/src/')[1]}`;
  if (url.includes('/dist/bench/')) return 'bench harness';
  return url.replace(/.*node_modules\//, '').split('/')[0] ?? url;
}
for (const [id, t] of self) {
  const n = byId.get(id)!;
  if (n.callFrame.functionName === '(idle)') {
    idle += t;
    continue;
  }
  total += t;
  const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/.*\/(node_modules|dist)\//, '')}:${n.callFrame.lineNumber + 1}`;
  fns.set(key, (fns.get(key) ?? 0) + t);
  const g = group(n);
  groups.set(g, (groups.get(g) ?? 0) + t);
}
const pct = (t: number) => `${((100 * t) / total).toFixed(1).padStart(5)} %`;
console.log(`busy ${(total / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s`);
console.log('\nby group (self time):');
for (const [g, t] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${pct(t)}  ${g}`);
console.log('\nby function (self time):');
for (const [f, t] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 25))) console.log(`  ${pct(t)}  ${f}`);
