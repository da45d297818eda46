/**
 * .ci/check-env, the part of .ci/run that checks what it cannot install: run for real with a PATH
 * that lacks node or npm (or has a node of the wrong version), a PostgreSQL URL on a port where
 * nothing listens, and a database that does not exist. Each failure is exactly one line naming
 * what is missing.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PG_URL } from '../helpers/server.js';

const SCRIPT = join(import.meta.dirname, '..', '..', '.ci', 'check-env');
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A PATH folder holding only the given fake commands (shell scripts). */
function fakeBin(commands: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'esnap-ci-'));
  dirs.push(dir);
  for (const [name, body] of Object.entries(commands)) {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  }
  return dir;
}

function check(parts: string[], env: Record<string, string>): { code: number | null; lines: string[] } {
  const r = spawnSync('/bin/bash', [SCRIPT, ...parts], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20_000 });
  expect(r.stdout).toBe('');
  return { code: r.status, lines: r.stderr.split('\n').filter(Boolean) };
}

const fakeNode = (version: string): string => `echo ${version}`;

describe('.ci/check-env node', () => {
  it('passes with the Node.js and npm running this test', () => {
    expect(check(['node'], {})).toEqual({ code: 0, lines: [] });
  });

  it('names Node.js 20.10 and Debian 12 when node is not on the PATH', () => {
    const r = check(['node'], { PATH: fakeBin({}) });
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([expect.stringMatching(/^ci: node is not installed: esnap needs Node.js 20.10 or newer \(Debian 12's nodejs package is 18/)]);
  });

  it.each(['18.19.0', '20.9.0', '19.99.1'])('refuses node %s', (version) => {
    const r = check(['node'], { PATH: fakeBin({ node: fakeNode(version), npm: 'true' }) });
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([expect.stringMatching(new RegExp(`^ci: node ${version.replaceAll('.', '\\.')} is too old: esnap needs Node.js 20.10 or newer`))]);
  });

  it.each(['20.10.0', '22.1.0'])('accepts node %s with npm', (version) => {
    expect(check(['node'], { PATH: fakeBin({ node: fakeNode(version), npm: 'true' }) })).toEqual({ code: 0, lines: [] });
  });

  it('names npm when node is there without it', () => {
    const r = check(['node'], { PATH: fakeBin({ node: fakeNode('20.10.0') }) });
    expect(r).toEqual({ code: 1, lines: ['ci: npm is not installed: it comes with Node.js from nodejs.org or NodeSource'] });
  });
});

describe('.ci/check-env postgres', () => {
  it('passes with the PostgreSQL the tests use', () => {
    expect(check(['postgres'], { ESNAP_TEST_PG_URL: PG_URL })).toEqual({ code: 0, lines: [] });
  });

  it('names the address when no PostgreSQL answers there', () => {
    const r = check(['postgres'], { ESNAP_TEST_PG_URL: 'postgres://postgres@127.0.0.1:1/test' });
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([expect.stringMatching(/^ci: no PostgreSQL answers at 127\.0\.0\.1:1 \(tests use postgres:\/\/postgres@127\.0\.0\.1:1\/test;/)]);
  });

  it('names the missing database and how to make it', () => {
    const url = new URL(PG_URL);
    url.pathname = '/esnap_ci_no_such_db';
    const r = check(['postgres'], { ESNAP_TEST_PG_URL: url.toString() });
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([expect.stringMatching(new RegExp(`^ci: PostgreSQL at ${url.hostname}:${url.port || 5432} has no database esnap_ci_no_such_db \\(.*\\): createdb .* esnap_ci_no_such_db$`))]);
  });

  it('never shows a password from the URL', () => {
    const r = check(['postgres'], { ESNAP_TEST_PG_URL: 'postgres://someone:hunter2@127.0.0.1:1/test' });
    expect(r.code).toBe(1);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toContain('postgres://someone:***@127.0.0.1:1/test');
    expect(r.lines[0]).not.toContain('hunter2');
  });

  it('names the client tools when psql is missing', () => {
    const r = check(['postgres'], { PATH: fakeBin({ sed: 'exec /bin/sed "$@"' }), ESNAP_TEST_PG_URL: PG_URL });
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([expect.stringMatching(/^ci: the PostgreSQL client \(psql, pg_isready\) is not installed: apt-get install postgresql/)]);
  });
});

it('.ci/check-env refuses an unknown part', () => {
  expect(check(['nodejs'], {})).toEqual({ code: 1, lines: ['ci: check-env: unknown part nodejs (system, node, postgres)'] });
});
