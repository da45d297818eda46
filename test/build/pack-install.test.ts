/**
 * Installing esnap elsewhere: `npm pack` (prepack builds) gives a tarball with the built server and
 * UI and nothing of the sources, and `npm install -g` of that tarball into an empty prefix, which
 * pulls the runtime dependencies only, gives `esnap` and `es` commands that work outside the
 * checkout. better-sqlite3's install script runs as on a user's machine, but fetches its prebuilt
 * binary from a local mirror of the one this checkout compiled (no internet here; compiling it
 * again would take minutes).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { esnapEnv } from '../helpers/esnap-process.js';
import { ADMIN_KEY } from '../helpers/server.js';
import { startPrebuiltMirror, type PrebuiltMirror } from '../helpers/sqlite-prebuilt.js';

const ROOT = join(import.meta.dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

let dir: string;
let mirror: PrebuiltMirror;

/** Runs a command to its end without blocking this process (the binary mirror answers from it). */
function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env, cwd = dir): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'esnap-pack-'));
  mirror = await startPrebuiltMirror();
});

afterAll(async () => {
  await mirror?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('npm pack, then npm install -g of the tarball', () => {
  let tarball: string;
  let prefix: string;

  it('packs the built server and UI, without sources or tests', { timeout: 120_000 }, async () => {
    const r = await run('npm', ['pack', '--pack-destination', dir], process.env, ROOT);
    expect(r.code, r.stderr).toBe(0);
    tarball = join(dir, `esnap-${VERSION}.tgz`);
    const files = (await run('tar', ['-tzf', tarball])).stdout.split('\n').filter(Boolean);
    expect(files).toEqual(expect.arrayContaining(['package/package.json', 'package/README.md', 'package/dist/src/bin/esnap.js', 'package/dist/src/bin/es.js', 'package/dist/ui/index.html', 'package/contrib/systemd/esnap.service']));
    expect(files.filter((f) => /^package\/(src|test|ui|bench|dist\/bench|dist\/test)\/|\.tsbuildinfo$|\.ts$/.test(f))).toEqual([]);
  });

  it('installs into an empty prefix with the runtime dependencies only, quietly', { timeout: 120_000 }, async () => {
    prefix = join(dir, 'prefix');
    const env = { ...process.env, ...mirror.env };
    const r = await run('npm', ['install', '-g', '--prefix', prefix, '--allow-scripts=better-sqlite3', '--prefer-offline', '--no-audit', '--no-fund', tarball], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/EBADENGINE|install-scripts/);
    // The install script ran and took the prebuilt binary.
    expect(mirror.requests).toEqual([expect.stringMatching(/better-sqlite3-v.*\.tar\.gz$/)]);
    const modules = readdirSync(join(prefix, 'lib', 'node_modules', 'esnap', 'node_modules'));
    expect(modules).toEqual(expect.arrayContaining(['better-sqlite3', 'fastify', 'pg-boss']));
    expect(modules.filter((m) => ['typescript', 'vite', 'vitest', 'preact', 'playwright-core', 'fast-check', '@types'].includes(m))).toEqual([]);
  });

  it('gives working esnap and es commands', { timeout: 60_000 }, async () => {
    const esnap = await run(join(prefix, 'bin', 'esnap'), ['--help']);
    expect(esnap.code, esnap.stderr).toBe(0);
    expect(esnap.stdout).toMatch(/^usage: esnap <command>/);
    const es = await run(join(prefix, 'bin', 'es'), ['--help']);
    expect(es.code, es.stderr).toBe(0);
    expect(es.stdout).toContain('Usage: es action [/resource]');
  });

  it('serves the API and the UI from the installed package, then stops cleanly', { timeout: 60_000 }, async () => {
    const data = join(dir, 'data');
    const proc = spawn(join(prefix, 'bin', 'esnap'), ['serve'], {
      cwd: dir,
      env: esnapEnv({ ESNAP_LISTEN: '127.0.0.1:0', ESNAP_DATA_DIR: data, ESNAP_ADMIN_API_KEY: ADMIN_KEY }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => proc.once('close', r));
    try {
      const end = Date.now() + 40_000;
      while (!/127\.0\.0\.1:(\d+)",[^\n]*"esnap listening"/.test(out)) {
        if (proc.exitCode !== null || Date.now() > end) throw new Error(`esnap serve did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const url = `http://127.0.0.1:${/127\.0\.0\.1:(\d+)",[^\n]*"esnap listening"/.exec(out)![1]}`;
      const ui = await fetch(`${url}/`);
      expect(ui.status).toBe(200);
      expect(await ui.text()).toContain('<!doctype html>');
      const vms = await fetch(`${url}/api/vm/`, { headers: { 'ES-API-KEY': ADMIN_KEY } });
      expect(vms.status).toBe(200);
      expect(await vms.json()).toMatchObject({ status: 'SUCCESS', result: [] });
    } finally {
      proc.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
