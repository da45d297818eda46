/**
 * The web UI's static files (the Vite build of `ui/`, written to `dist/ui`), served at `/`.
 *
 * The only routes without authentication: the files are public code, and the app itself signs in
 * through the API. Hazards handled here:
 * - nothing outside the build folder is ever read: the path is decoded once, `..`, backslashes,
 *   NUL and dot-files are refused, and the real path of the file must stay inside the real path of
 *   the folder (no symlink escapes);
 * - `/api…` is never shadowed: those URLs go to the API's own 404 answer, and the API routes are
 *   more specific than this wildcard anyway;
 * - the app's own routes (`/vm/web01`, `/tasks`) get index.html, but a missing asset (`/assets/…`
 *   or `/x.js`) is a real 404, so a stale page never runs HTML as a script.
 *
 * Hashed assets are immutable for a year; index.html is revalidated on every load (ETag), so a new
 * build is picked up at once. Pre-compressed `.gz` siblings written by the build are sent to
 * clients that accept gzip.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.json': 'application/json',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
  '.webmanifest': 'application/manifest+json',
};
/** Types worth sending pre-compressed (the build writes `.gz` siblings for these). */
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.svg', '.json', '.map', '.txt']);

const IMMUTABLE = 'public, max-age=31536000, immutable';
const REVALIDATE = 'no-cache';
const SHORT = 'public, max-age=3600';

/**
 * Scripts and styles only from this origin, requests only to this origin (the API), no framing.
 * Sent with index.html, where it applies.
 */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** The package's root: the nearest folder upwards holding package.json (works from src/ and dist/src/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

/** Where `npm run build` writes the UI. */
export function defaultUiRoot(): string {
  return join(packageRoot(), 'dist', 'ui');
}

interface Found {
  readonly path: string;
  readonly ext: string;
}

/**
 * Maps a URL path to a file inside `root`, or null. Only plain segments are accepted; the result
 * is checked against the folder's real path, so neither `..` nor a symlink can leave it.
 */
/** Decoded path segments, or null for a path that tries to leave the folder or name a dot-file. */
function safeSegments(urlPath: string): string[] | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const segments = decoded.split('/').filter((s) => s !== '');
  if (segments.some((s) => s.startsWith('.'))) return null;
  return segments;
}

async function locate(realRoot: string, urlPath: string): Promise<Found | null> {
  const segments = safeSegments(urlPath);
  if (!segments || segments.length === 0) return null;
  const candidate = resolve(realRoot, ...segments);
  if (!candidate.startsWith(realRoot + sep)) return null;
  try {
    const real = await realpath(candidate);
    if (!real.startsWith(realRoot + sep)) return null;
    const st = await stat(real);
    if (!st.isFile()) return null;
    return { path: real, ext: extname(real).toLowerCase() };
  } catch {
    return null;
  }
}

/** App routes get index.html; paths that look like files (an extension, or under /assets/) do not. */
function isAppRoute(urlPath: string): boolean {
  if (urlPath.startsWith('/assets/')) return false;
  const last = urlPath.split('/').pop() ?? '';
  // A single top-level segment with a dot is a file (`/favicon.svg`); deeper segments may hold
  // dots because hostnames do (`/vm/web01.example.com`).
  return !(urlPath.lastIndexOf('/') === 0 && last.includes('.'));
}

function etagOf(body: Buffer): string {
  return `"${createHash('sha1').update(body).digest('base64url').slice(0, 22)}"`;
}

async function sendFile(request: FastifyRequest, reply: FastifyReply, file: Found, cache: string): Promise<void> {
  const type = CONTENT_TYPES[file.ext] ?? 'application/octet-stream';
  const acceptsGzip = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
  let body: Buffer | null = null;
  let gzipped = false;
  if (COMPRESSIBLE.has(file.ext)) {
    void reply.header('Vary', 'Accept-Encoding');
    if (acceptsGzip) {
      try {
        body = await readFile(`${file.path}.gz`);
        gzipped = true;
      } catch {
        body = null;
      }
    }
  }
  body ??= await readFile(file.path);
  const etag = etagOf(body);
  void reply
    .header('Content-Type', type)
    .header('Cache-Control', cache)
    .header('ETag', etag)
    .header('X-Content-Type-Options', 'nosniff');
  if (gzipped) void reply.header('Content-Encoding', 'gzip');
  if (file.ext === '.html') void reply.header('Content-Security-Policy', CSP).header('Referrer-Policy', 'no-referrer');
  if (request.headers['if-none-match'] === etag) {
    await reply.code(304).send();
    return;
  }
  await reply.code(200).send(body);
}

async function notFound(reply: FastifyReply): Promise<void> {
  await reply.code(404).header('Content-Type', 'text/plain; charset=utf-8').header('Cache-Control', 'no-store').send('Not found\n');
}

export interface UiOptions {
  /** The build folder; `dist/ui` of the package by default. */
  readonly root?: string;
}

/**
 * Registers `GET /` and `GET /*` (HEAD follows). Call it after the API's routes: the wildcard is
 * the least specific route, and `/api…` URLs it sees anyway are handed to the API's 404.
 */
export function uiRoute(app: FastifyInstance, opts: UiOptions = {}): void {
  const root = resolve(opts.root ?? defaultUiRoot());
  let realRoot: string | null = null;
  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const urlPath = (request.url.split('?')[0] ?? '/').replace(/\/{2,}/g, '/');
    if (urlPath === '/api' || urlPath.startsWith('/api/')) {
      reply.callNotFound();
      return;
    }
    // The folder may appear after start-up (a build running next to a live server).
    realRoot ??= await realpath(root).catch(() => null);
    const index = realRoot ? await locate(realRoot, '/index.html') : null;
    if (!realRoot || !index) {
      await reply
        .code(503)
        .header('Content-Type', 'text/plain; charset=utf-8')
        .header('Cache-Control', 'no-store')
        .send('The web UI is not built. Run `npm run build` (it builds the UI into dist/ui).\n');
      return;
    }
    if (urlPath !== '/' && urlPath !== '/index.html') {
      // A path that tries to leave the folder is refused outright, not answered with the app.
      if (!safeSegments(urlPath)) return notFound(reply);
      const file = await locate(realRoot, urlPath);
      if (file) return sendFile(request, reply, file, urlPath.startsWith('/assets/') ? IMMUTABLE : SHORT);
      if (!isAppRoute(urlPath)) return notFound(reply);
    }
    await sendFile(request, reply, index, REVALIDATE);
  };
  app.get('/', handler);
  app.get('/*', handler);
}
