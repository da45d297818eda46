/** Vite build of the web UI: ui/ → dist/ui, Preact through esbuild's automatic JSX runtime. */
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: '/',
  publicDir: 'public',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: fileURLToPath(new URL('../dist/ui', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // One small bundle: the app is a few hundred kB of source at most.
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});
