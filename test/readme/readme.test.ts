/**
 * The README's quick start, curl and `es` sections, run as written, in order, in one shell, on a
 * fresh copy of this checkout (its files and its built dist/, without node_modules or data), as a
 * newcomer would: `npm ci`, `npm start` in the background, then every curl and es command. curl
 * is wrapped to fail the script on an HTTP error (the final status, for ES-STREAM answers), es
 * fails it by its exit code. Afterwards the state the commands leave is checked through the API.
 *
 * The server listens on the README's port, 8000: the test fails at once if that port is taken.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { esnapEnv } from '../helpers/esnap-process.js';
import { startPrebuiltMirror, type PrebuiltMirror } from '../helpers/sqlite-prebuilt.js';
import { readmeBlocks } from './readme-blocks.js';

const ROOT = join(import.meta.dirname, '..', '..');
const API = 'http://127.0.0.1:8000/api';

/** Fails the script on an HTTP error; ES-STREAM answers carry their final status at the start of the body. */
const CURL_WRAPPER = String.raw`
curl() {
  local hdr body rc=0 status
  hdr=$(mktemp) body=$(mktemp)
  command curl -D "$hdr" -o "$body" "$@" || rc=$?
  cat "$body"
  [ "$rc" = 0 ] || { rm -f "$hdr" "$body"; return "$rc"; }
  status=$(awk '/^HTTP\//{s=$2} END{print s}' "$hdr")
  if grep -qi '^es_stream:' "$hdr"; then status=$(tr -d ' \n' <"$body" | grep -oE '^[0-9]{3}' || echo none); fi
  rm -f "$hdr" "$body"
  echo "curl $status" >>"$README_TEST_LOG"
  case "$status" in 2??|3??) return 0 ;; esac
  echo "README command answered HTTP $status: curl $*" >&2
  return 1
}
`;

const portTaken = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

describe('README blocks selection', () => {
  it('runs the three sections in order, leaves out marked blocks and every other section', () => {
    const md = [
      'intro',
      '```sh',
      'echo start',
      '```',
      '<!-- readme-test: skip (the test suite itself) -->',
      '',
      '```sh',
      'npm test',
      '```',
      '## Five minutes with curl',
      '```sh',
      'echo curl',
      '```',
      '```json',
      '{}',
      '```',
      '## Differences from Danube',
      '```sh',
      'echo other',
      '```',
      '## The `es` client',
      '```sh',
      'echo es',
      '```',
    ].join('\n');
    expect(readmeBlocks(md).map((b) => b.code)).toEqual(['echo start', 'echo curl', 'echo es']);
    expect(() => readmeBlocks('## The `es` client\n')).toThrow('README has no section "## Five minutes with curl"');
  });
});

describe('README references', () => {
  it('points at nothing outside the repository and links the architecture that is in it', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme.match(/\.\.\/shared\/|shared\/design\.md/g)).toBeNull();
    expect(readme).toContain('](docs/architecture.md)');
    expect(readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8')).toMatch(/^# esnap architecture\n/);
  });
});

describe('README first hour, run as written', () => {
  let dir: string;
  let mirror: PrebuiltMirror;
  let script: { code: number | null; output: string; log: string[]; key: string };
  let group: number | undefined;

  beforeAll(async () => {
    if (await portTaken(8000)) throw new Error('port 8000 is in use: the README test starts esnap there, as the README does');
    dir = mkdtempSync(join(tmpdir(), 'esnap-readme-'));
    mirror = await startPrebuiltMirror();
    const copy = join(dir, 'esnap');
    mkdirSync(copy);
    // The checkout's files as they are now (tracked and new, not ignored) and its dist/, with their
    // times, so `npm start` finds the build current as it would in the checkout.
    const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
    const list = files.stdout.split('\0').filter(Boolean).concat('dist').join('\0');
    const tar = spawnSync('bash', ['-c', `tar -C "$1" --null -T - -cf - | tar -C "$2" -xpf -`, 'copy', ROOT, copy], { input: list, encoding: 'utf8' });
    expect(tar.status, tar.stderr).toBe(0);

    const blocks = readmeBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'));
    const body = blocks.map((b, i) => `echo '@@ block ${i + 1} (${b.section || 'quick start'})'\n${b.code}`).join('\n');
    const log = join(dir, 'curl.log');
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    const proc = spawn('bash', ['-c', `set -euo pipefail\n${CURL_WRAPPER}\n${body}\necho "@@ key $KEY"\n`], {
      cwd: copy,
      detached: true, // its own process group: the server it leaves running is stopped with it
      env: { ...esnapEnv({ ...mirror.env, npm_config_prefer_offline: 'true', README_TEST_LOG: log, TMPDIR: tmp }), ES_API_KEY: '', ES_API_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    group = proc.pid;
    let output = '';
    proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // A server that fails to start would leave the README's wait loop polling forever.
    const watchdog = setTimeout(() => {
      output += '\n(the README test stopped the script after 200 s)\n';
      process.kill(-proc.pid!, 'SIGKILL');
    }, 200_000);
    // 'exit', not 'close': the server the script leaves running holds its output pipes open.
    const code = await new Promise<number | null>((r) => proc.once('exit', r));
    clearTimeout(watchdog);
    for (let i = 0; i < 20 && !output.includes('@@ key '); i++) await new Promise((r) => setTimeout(r, 50));
    const logLines = (() => {
      try {
        return readFileSync(log, 'utf8').split('\n').filter(Boolean);
      } catch {
        return [];
      }
    })();
    script = { code, output, log: logLines, key: /@@ key (\S+)/.exec(output)?.[1] ?? '' };
  }, 240_000);

  afterAll(async () => {
    if (group !== undefined) {
      try {
        process.kill(-group, 'SIGTERM');
      } catch {
        // already gone
      }
      for (let i = 0; i < 100 && (await portTaken(8000)); i++) await new Promise((r) => setTimeout(r, 100));
    }
    await mirror?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  const api = async (path: string): Promise<{ status: number; body: any }> => {
    const r = await fetch(`${API}${path}`, { headers: { 'ES-API-KEY': script.key } });
    return { status: r.status, body: await r.json() };
  };

  it('runs every command without an error', () => {
    expect({ code: script.code, tail: script.code === 0 ? '' : script.output.slice(-3000) }).toEqual({ code: 0, tail: '' });
    expect(script.log.length).toBeGreaterThanOrEqual(12);
    expect(script.output).toContain('Usage: es action [/resource]');
  });

  it('leaves the snapshots, definitions and password the commands made', async () => {
    const snaps = await api('/vm/web01/snapshot/?full=true');
    expect(snaps.status).toBe(200);
    const byName = Object.fromEntries((snaps.body.result as Array<{ name: string }>).map((s) => [s.name, s]));
    expect(Object.keys(byName).sort()).toEqual(['backup1', 'before-upgrade']);
    expect(byName['before-upgrade']).toMatchObject({ note: 'keep', pinned: true });
    expect(byName['backup1']).toMatchObject({ note: 'before upgrade' });
    const defs = await api('/vm/web01/define/snapshot/?full=true');
    expect((defs.body.result as Array<{ name: string }>).map((d) => d.name).sort()).toEqual(['daily', 'weekly']);
    expect(script.output).toMatch(/"token":/);
  });
});
