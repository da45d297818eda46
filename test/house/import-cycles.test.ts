// Folders of src/ must not import each other in a circle. Counts runtime imports only: `import type`,
// `export type`, specifiers marked `type` and imports used only as types are left out, because the compiler
// erases them. A folder is
// the first path segment under src/ (files directly in src/ form the folder '.'). On failure the message
// lists each cycle with the file-level imports that make it, so the import to change is plain to see.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const srcDir = join(root, 'src');

interface FileImport {
  from: string; // path relative to the repository, e.g. src/vms/disk.service.ts
  to: string;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/**
 * Module specifiers a file loads at run time: the file is compiled alone (as tsc does with its settings, which
 * drops imports used only as types) and the imports, re-exports and `import()` calls of the output are read.
 */
export function runtimeSpecifiers(fileName: string, text: string): string[] {
  const js = ts.transpileModule(text, {
    fileName,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  return ts.preProcessFile(js, true, true).importedFiles.map((f) => f.fileName);
}

let cached: FileImport[] | undefined;

/** Runtime imports between files of src/ (relative specifiers only; packages are not folders of src/). */
export function fileImports(): FileImport[] {
  if (cached) return cached;
  const files = sourceFiles(srcDir);
  const known = new Set(files);
  const edges: FileImport[] = [];
  for (const file of files) {
    for (const spec of runtimeSpecifiers(file, readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const base = resolve(dirname(file), spec);
      const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
      const target = candidates.find((c) => known.has(c));
      if (target === undefined) throw new Error(`${relative(root, file)}: cannot resolve import '${spec}'`);
      edges.push({ from: relative(root, file), to: relative(root, target) });
    }
  }
  cached = edges;
  return edges;
}

export function folderOf(path: string): string {
  const parts = relative(srcDir, join(root, path)).split(sep);
  return parts.length > 1 ? parts[0]! : '.';
}

/** Tarjan's strongly connected components of a directed graph. */
export function stronglyConnected(graph: Map<string, Set<string>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);
  return components;
}

/** One text block per folder cycle: its folders and every file import between two of them. */
export function folderCycles(edges: FileImport[]): string[] {
  const graph = new Map<string, Set<string>>();
  for (const { from, to } of edges) {
    const a = folderOf(from);
    const b = folderOf(to);
    if (!graph.has(a)) graph.set(a, new Set());
    if (!graph.has(b)) graph.set(b, new Set());
    if (a !== b) graph.get(a)!.add(b);
  }
  return stronglyConnected(graph)
    .filter((c) => c.length > 1)
    .map((component) => {
      const members = new Set(component);
      const lines = edges
        .filter((e) => folderOf(e.from) !== folderOf(e.to) && members.has(folderOf(e.from)) && members.has(folderOf(e.to)))
        .map((e) => `  ${folderOf(e.from)} -> ${folderOf(e.to)}: ${e.from} imports ${e.to}`)
        .sort();
      return `cycle between ${component.length} folders (${component.join(', ')}), made by:\n${lines.join('\n')}`;
    });
}

/**
 * The layers of docs/architecture.md, top first: a folder may import only folders after it. A new folder of src/
 * gets its place here (and in the document's table).
 */
export const LAYERS: readonly string[] = [
  'bin', 'cli',
  '.',
  'http',
  'agent', 'overview', 'backups', 'metrics', 'definitions', 'scheduler', 'snapshots', 'vms', 'accounts', 'tasks', 'nodes', 'alerts', 'health',
  'transport', 'queue', 'storage', 'hypervisor', 'guest', 'db',
  'domain', 'lib',
];

/** File imports that go up the layer list (or leave it), one line each. */
export function upwardImports(edges: FileImport[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    const a = folderOf(e.from);
    const b = folderOf(e.to);
    if (a === b) continue;
    const ra = LAYERS.indexOf(a);
    const rb = LAYERS.indexOf(b);
    if (ra < 0 || rb < 0) out.push(`  folder ${ra < 0 ? a : b} has no place in LAYERS: ${e.from} imports ${e.to}`);
    else if (rb < ra) out.push(`  ${a} -> ${b} goes up: ${e.from} imports ${e.to}`);
  }
  return [...new Set(out)].sort();
}

describe('imports between the folders of src/', () => {
  it('the parser counts runtime imports and leaves out type-only ones', () => {
    const text = [
      "import type { A } from './a.js';",
      "import { type B } from './b.js';",
      "import { type C, d } from './c.js';",
      "import { K } from './k.js';",
      "let k: K = d(e);",
      "import e from './e.js';",
      "import './f.js';",
      "export type { G } from './g.js';",
      "export { h } from './h.js';",
      "export * from './i.js';",
      "const j = await import('./j.js');",
    ].join('\n');
    expect(runtimeSpecifiers('x.ts', text)).toEqual(['./c.js', './e.js', './f.js', './h.js', './i.js', './j.js']);
  });

  it('Tarjan finds a cycle and leaves a chain alone', () => {
    const graph = new Map([
      ['a', new Set(['b'])],
      ['b', new Set(['c'])],
      ['c', new Set(['a', 'd'])],
      ['d', new Set<string>()],
    ]);
    expect(stronglyConnected(graph).filter((c) => c.length > 1)).toEqual([['a', 'b', 'c']]);
  });

  it('form no cycle', () => {
    const edges = fileImports();
    expect(edges.length).toBeGreaterThan(100);
    const cycles = folderCycles(edges);
    expect(cycles, `\n${cycles.join('\n\n')}\n`).toEqual([]);
    // Compiling ~200 files takes seconds on a loaded machine.
  }, 120_000);

  it('run one way, down the layers of docs/architecture.md', () => {
    const up = upwardImports(fileImports());
    expect(up, `\n${up.join('\n')}\n`).toEqual([]);
  }, 120_000);
});
