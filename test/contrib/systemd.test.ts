/**
 * The systemd units in contrib/systemd: their keys (a lint of our own, so a typo fails here and not
 * on an operator's machine), the environment example against the variables src/config.ts reads,
 * and `systemd-analyze verify` where it is installed.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config.js';
import { platformUnavailable } from '../platform/require.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DIR = join(ROOT, 'contrib', 'systemd');
const UNITS = ['esnap.service', 'esnap-agent.service'] as const;
const DROP_IN = join('esnap.service.d', 'local-agent-root.conf');

type Unit = Map<string, Array<[string, string]>>;

/** Sections and their key=value pairs in order (comments, blank lines dropped; no continuation lines in ours). */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Array<[string, string]> | null = null;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.endsWith('\\')) throw new Error(`line ${i + 1}: continuation lines are not used`);
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      if (unit.has(sec[1]!)) throw new Error(`line ${i + 1}: section [${sec[1]}] twice`);
      section = [];
      unit.set(sec[1]!, section);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`line ${i + 1}: not a key=value in a section: ${line}`);
    section.push([kv[1]!, kv[2]!]);
  }
  return unit;
}

const ALLOWED: Record<string, ReadonlySet<string>> = {
  Unit: new Set(['Description', 'Documentation', 'Wants', 'Requires', 'After', 'Before', 'PartOf', 'ConditionPathExists']),
  Service: new Set([
    'Type', 'User', 'Group', 'StateDirectory', 'StateDirectoryMode', 'WorkingDirectory', 'Environment', 'EnvironmentFile',
    'ExecStart', 'Restart', 'RestartSec', 'KillSignal', 'KillMode', 'TimeoutStopSec', 'NoNewPrivileges', 'ProtectSystem',
    'ReadWritePaths', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules',
    'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectClock', 'ProtectHostname', 'RestrictSUIDSGID', 'RestrictRealtime',
    'RestrictNamespaces', 'RestrictAddressFamilies', 'LockPersonality', 'SystemCallArchitectures', 'UMask',
  ]),
  Install: new Set(['WantedBy', 'RequiredBy', 'Alias']),
};
/** Keys systemd accumulates; every other key given twice would silently keep only the last. */
const REPEATABLE = new Set(['Documentation', 'Wants', 'Requires', 'After', 'Before', 'Environment', 'EnvironmentFile', 'ReadWritePaths', 'WantedBy']);
const REQUIRED: Record<string, readonly string[]> = {
  Unit: ['Description', 'After', 'Wants'],
  Service: ['Type', 'User', 'EnvironmentFile', 'ExecStart', 'Restart', 'RestartSec', 'KillSignal', 'TimeoutStopSec', 'NoNewPrivileges', 'ProtectSystem'],
  Install: ['WantedBy'],
};

/** The lint: problems found, as text (empty when the unit is fine). */
function lint(unit: Unit, opts: { dropIn?: boolean } = {}): string[] {
  const problems: string[] = [];
  for (const [name, pairs] of unit) {
    const allowed = ALLOWED[name];
    if (!allowed) {
      problems.push(`unknown section [${name}]`);
      continue;
    }
    const seen = new Set<string>();
    for (const [k] of pairs) {
      if (!allowed.has(k)) problems.push(`[${name}] ${k} is not an allowed key`);
      if (seen.has(k) && !REPEATABLE.has(k)) problems.push(`[${name}] ${k} given twice`);
      seen.add(k);
    }
  }
  if (!opts.dropIn) {
    for (const [name, keys] of Object.entries(REQUIRED)) {
      for (const k of keys) if (!unit.get(name)?.some(([key]) => key === k)) problems.push(`[${name}] ${k} is missing`);
    }
  }
  // Node's JIT needs writable and executable memory.
  if (unit.get('Service')?.some(([k]) => k === 'MemoryDenyWriteExecute')) problems.push('MemoryDenyWriteExecute breaks Node');
  return problems;
}

function value(unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.filter(([k]) => k === key).at(-1)?.[1];
}

/** A list setting given on several lines (After=, Wants=), as systemd joins it. */
function list(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([k]) => k === key).flatMap(([, v]) => v.split(/\s+/));
}

/** systemd time spans as our units write them: 45, 45s, 2min. */
function seconds(span: string): number {
  const m = /^(\d+)\s*(s|sec|min|m)?$/.exec(span.trim());
  if (!m) throw new Error(`unsupported time span ${span}`);
  return Number(m[1]) * (m[2] === 'min' || m[2] === 'm' ? 60 : 1);
}

const read = (name: string): string => readFileSync(join(DIR, name), 'utf8');

describe('contrib/systemd units', () => {
  const units = Object.fromEntries(UNITS.map((u) => [u, parseUnit(read(u))])) as Record<(typeof UNITS)[number], Unit>;

  it.each(UNITS)('%s: every key is known in its section, none repeated, the required ones present', (name) => {
    expect(lint(units[name])).toEqual([]);
    expect([...units[name].keys()]).toEqual(['Unit', 'Service', 'Install']);
  });

  it('the drop-in for a root local agent lints too', () => {
    const dropIn = parseUnit(read(DROP_IN));
    expect(lint(dropIn, { dropIn: true })).toEqual([]);
    expect(value(dropIn, 'Service', 'User')).toBe('root');
  });

  it('the lint catches what it is for', () => {
    const bad = parseUnit('[Unit]\nDescription=x\n[Service]\nType=exec\nType=simple\nRestrt=always\nMemoryDenyWriteExecute=yes\n');
    expect(lint(bad)).toEqual(expect.arrayContaining(['[Service] Type given twice', '[Service] Restrt is not an allowed key', '[Service] ExecStart is missing', 'MemoryDenyWriteExecute breaks Node', '[Install] WantedBy is missing']));
  });

  it.each(UNITS)('%s: stops after esnap\'s own grace, reads the environment file, runs the installed package\'s bin', (name) => {
    const u = units[name];
    const grace = loadConfig({}).stopGraceS;
    // After the grace esnap still thaws frozen guests (up to 5 s, src/bin/graceful-stop.ts) before it exits.
    expect(seconds(value(u, 'Service', 'TimeoutStopSec')!)).toBeGreaterThan(grace + 5);
    expect(value(u, 'Service', 'KillSignal')).toBe('SIGTERM');
    expect(value(u, 'Service', 'KillMode')).toBe('mixed');
    expect(value(u, 'Service', 'Restart')).toBe('on-failure');
    expect(value(u, 'Service', 'EnvironmentFile')).toBe('/etc/esnap/esnap.env');
    // `npm install -g --prefix /opt/esnap` links the package's `bin` entries into /opt/esnap/bin; through
    // env, as systemd-analyze verify wants an executable that exists where it checks.
    const bin = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin;
    expect(bin['esnap']).toBeDefined();
    const cmd = name === 'esnap.service' ? 'serve' : 'agent';
    expect(value(u, 'Service', 'ExecStart')).toBe(`/usr/bin/env /opt/esnap/bin/esnap ${cmd}`);
    expect(readFileSync(join(ROOT, 'src', 'bin', 'esnap.ts'), 'utf8')).toContain(`case '${cmd}':`);
    expect(list(u, 'Unit', 'After')).toEqual(expect.arrayContaining(['network-online.target', 'postgresql.service']));
    expect(list(u, 'Unit', 'Wants')).toContain('network-online.target');
  });

  it('the server runs as its own user in its state directory; the agent as root', () => {
    const server = units['esnap.service'];
    expect(value(server, 'Service', 'User')).toBe('esnap');
    expect(value(server, 'Service', 'StateDirectory')).toBe('esnap');
    expect(value(server, 'Service', 'Environment')).toBe('ESNAP_DATA_DIR=/var/lib/esnap');
    expect(value(server, 'Service', 'ProtectSystem')).toBe('strict');
    expect(value(units['esnap-agent.service'], 'Service', 'User')).toBe('root');
  });
});

describe('contrib/systemd/esnap.env.example', () => {
  const example = read('esnap.env.example');
  const lines = [...example.matchAll(/^#?(ESNAP_[A-Z0-9_]+)=(.*)$/gm)].map((m) => ({ name: m[1]!, value: m[2]! }));
  // What config.ts reads: the names it passes as string literals (get('ESNAP_X'), env['ESNAP_X']).
  const readByConfig = new Set([...readFileSync(join(ROOT, 'src', 'config.ts'), 'utf8').matchAll(/'(ESNAP_[A-Z0-9_]+)'/g)].map((m) => m[1]!));

  it('lists every variable config.ts reads, once, and nothing else', () => {
    const names = lines.map((l) => l.name);
    expect(new Set(names).size).toBe(names.length);
    expect([...readByConfig].filter((n) => !names.includes(n))).toEqual([]);
    expect(names.filter((n) => !readByConfig.has(n))).toEqual([]);
    expect(readByConfig.size).toBeGreaterThan(15);
  });

  it('every example value is accepted by the configuration', () => {
    for (const { name, value: raw } of lines) {
      // Files that do not exist here (TLS PEM files, the JSON config) are checked by their own tests.
      if (raw.startsWith('/etc/')) continue;
      const v = raw.replace(/^'(.*)'$/, '$1');
      try {
        loadConfig({ [name]: v });
      } catch (err) {
        if (err instanceof ConfigError) throw new Error(`${name}=${raw}: ${err.message}`);
        throw err;
      }
    }
  });
});

const SYSTEMD_ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

/** `systemd-analyze verify`: the lines about our units (it exits 0 on warnings, so the output is what counts). */
function verify(paths: readonly string[]): { status: number | null; ours: string[] } {
  const r = spawnSync(SYSTEMD_ANALYZE!, ['verify', '--man=no', ...paths], { encoding: 'utf8', timeout: 20_000 });
  const ours = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /esnap|bad\.service/.test(l));
  return { status: r.status, ours };
}

describe('systemd-analyze verify', () => {
  if (SYSTEMD_ANALYZE === undefined) return platformUnavailable('systemd-analyze verify', 'needs systemd-analyze (Debian package systemd)');
  it('finds nothing to say about the units and the drop-in', () => {
    // The drop-in folder beside esnap.service is loaded with it. Missing users, the environment
    // file and /opt/esnap are run-time matters it does not check; /usr/bin/env exists everywhere.
    const r = verify(UNITS.map((u) => join(DIR, u)));
    expect(r.ours).toEqual([]);
    expect(r.status).toBe(0);
  });

  it('does report a broken unit (the check above can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'esnap-systemd-'));
    try {
      const broken = read('esnap.service').replace('Restart=on-failure', 'Restart=on-failur\nRestartt=5s');
      writeFileSync(join(dir, 'bad.service'), broken);
      const r = verify([join(dir, 'bad.service')]);
      expect(r.ours.join('\n')).toMatch(/Restartt/);
      expect(r.ours.join('\n')).toMatch(/on-failur/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
