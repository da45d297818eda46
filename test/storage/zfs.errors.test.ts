/**
 * The zfs stderr translator against texts recorded from real zfs-fuse runs
 * (test/fixtures/zfs/zfs-fuse-0.7.0.json: argv, exit code and stderr of each command, and the
 * code and reason esnap must read from it), plus the OpenZFS wordings zfs-fuse cannot produce.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/storage/driver.js';
import { zfsError, ZfsError } from '../../src/storage/zfs/zfs.errors.js';

interface Fixture {
  readonly case: string;
  readonly argv: string[];
  readonly exitCode: number;
  readonly stderr: string;
  readonly producerArgv?: string[];
  readonly producerExitCode?: number;
  readonly producerStderr?: string;
  readonly expect: { readonly code: string; readonly reason: string };
}

const recorded = JSON.parse(readFileSync(new URL('../fixtures/zfs/zfs-fuse-0.7.0.json', import.meta.url), 'utf8')) as {
  recorded: string;
  cases: Fixture[];
};

describe('zfsError on recorded zfs-fuse stderr', () => {
  it('has a fixture for every failure the driver acts on', () => {
    const codes = new Set(recorded.cases.map((c) => c.expect.code));
    for (const code of ['disk_missing', 'snapshot_missing', 'snapshot_exists', 'busy', 'no_space', 'invalid_name', 'backend']) {
      expect(codes, code).toContain(code);
    }
    expect(new Set(recorded.cases.map((c) => c.case)).size).toBe(recorded.cases.length);
  });

  for (const f of recorded.cases) {
    it(`${f.case}: ${f.expect.code} (${f.expect.reason})`, () => {
      // A pipe is judged on both sides, the way the driver reads a failed send | recv.
      const stderr = f.producerStderr === undefined ? f.stderr : `${f.stderr}\n${f.producerStderr}`;
      const err = zfsError(f.argv, { code: f.exitCode, stderr });
      expect(err).toBeInstanceOf(StorageError);
      expect(err).toBeInstanceOf(ZfsError);
      expect({ code: err.code, reason: err.reason }).toEqual(f.expect);
      // The message names the command and zfs's own explanation, never the usage dump.
      expect(err.message).toMatch(new RegExp(`^zfs ${f.argv[1]} failed \\(exit ${f.exitCode}\\): `));
      expect(err.message).not.toMatch(/usage:|\n/);
      expect(err.cause).toEqual({ argv: f.argv, exitCode: f.exitCode, stderr });
    });
  }

  it('names the dataset or snapshot zfs complained about', () => {
    const byCase = new Map(recorded.cases.map((c) => [c.case, c]));
    const target = (name: string): string | null => {
      const f = byCase.get(name)!;
      return zfsError(f.argv, { code: f.exitCode, stderr: f.stderr }).target;
    };
    expect(target('snapshot-exists')).toBe('zxpool/disk0@es-1');
    expect(target('snapshot-of-missing-dataset')).toBe('zxpool/vm9/disk0');
    expect(target('destroy-held-snapshot')).toBe('zxpool/disk0@es-1');
    expect(target('list-p-unsupported')).toBeNull();
  });
});

describe('zfsError on texts zfs-fuse does not produce', () => {
  const cases: Array<[string, string, string]> = [
    // OpenZFS 2.x, destroy of a comma list none of whose snapshots exists.
    ['could not find any snapshots to destroy; check snapshot names.\n', 'snapshot_missing', 'missing'],
    // OpenZFS 2.x, the same failures in its words.
    ["cannot destroy snapshot tank/d@es-1: dataset is busy\n", 'busy', 'busy'],
    ["cannot create snapshot 'tank/d@es-1': out of space\nno snapshots were created\n", 'no_space', 'no_space'],
    ["cannot open 'tank/d@es 1': invalid character ' ' in name\n", 'invalid_name', 'invalid_name'],
    ["cannot create 'tank/d': quota exceeded\n", 'no_space', 'no_space'],
    ['some message nobody has seen\n', 'backend', 'other'],
    ['', 'backend', 'other'],
  ];
  for (const [stderr, code, reason] of cases) {
    it(`${JSON.stringify(stderr.split('\n')[0])} → ${code}`, () => {
      const err = zfsError(['zfs', 'destroy', 'tank/d@es-1'], { code: 1, stderr });
      expect({ code: err.code, reason: err.reason }).toEqual({ code, reason });
    });
  }
});
