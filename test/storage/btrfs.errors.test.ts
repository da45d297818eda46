/**
 * Recorded btrfs-progs 6.2 output (test/fixtures/btrfs/, real runs on this machine with LC_ALL=C)
 * through the driver's translator and parsers. Every fixture must be asserted here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { btrfsError, btrfsReason, type BtrfsContext, type BtrfsReason } from '../../src/storage/btrfs/btrfs.errors.js';
import {
  exclusiveByName,
  mountFor,
  parseMountInfo,
  parseQgroupShow,
  parseQgroupTable,
  topLevelPath,
} from '../../src/storage/btrfs/btrfs.qgroups.js';
import { StorageError, type StorageErrorCode } from '../../src/storage/driver.js';

interface Fixture {
  readonly argv: string[];
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const DIR = join(import.meta.dirname, '..', 'fixtures', 'btrfs');
const load = (name: string): Fixture => JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8')) as Fixture;

/** The contexts the driver passes: creating a snapshot of a disk, swapping one in, deleting. */
const SNAPSHOT: BtrfsContext = { missing: 'disk_missing', exists: 'snapshot_exists' };
const SWAP: BtrfsContext = { missing: 'snapshot_missing' };
const NONE: BtrfsContext = {};

/** fixture → [context, reason, code]. */
const EXPECTED: Record<string, [BtrfsContext, BtrfsReason, StorageErrorCode]> = {
  'snapshot-no-space': [SNAPSHOT, 'no_space', 'no_space'],
  'subvolume-create-no-space': [NONE, 'no_space', 'no_space'],
  'snapshot-quota-exceeded': [SNAPSHOT, 'no_space', 'no_space'],
  'snapshot-source-missing': [SNAPSHOT, 'missing', 'disk_missing'],
  'snapshot-source-not-subvolume': [SNAPSHOT, 'not_subvolume', 'disk_missing'],
  'snapshot-target-folder-missing': [SNAPSHOT, 'missing', 'disk_missing'],
  'snapshot-target-is-file': [SNAPSHOT, 'exists', 'snapshot_exists'],
  // btrfs tried to create the snapshot INSIDE the existing read-only one: never "exists" by name.
  'snapshot-target-exists-readonly': [SNAPSHOT, 'read_only', 'backend'],
  'snapshot-cross-device': [SWAP, 'cross_device', 'backend'],
  'snapshot-not-btrfs': [SWAP, 'not_btrfs', 'backend'],
  'snapshot-permission': [SNAPSHOT, 'permission', 'backend'],
  'subvolume-create-exists': [NONE, 'exists', 'backend'],
  'subvolume-create-parent-missing': [NONE, 'missing', 'backend'],
  'delete-missing': [SWAP, 'missing', 'snapshot_missing'],
  'delete-not-subvolume': [NONE, 'not_subvolume', 'backend'],
  'delete-partial': [NONE, 'missing', 'backend'],
  'delete-nested': [NONE, 'has_nested', 'backend'],
  'delete-default-subvolume': [NONE, 'busy', 'busy'],
  'delete-send-in-progress': [NONE, 'busy', 'busy'],
  // Not root: btrfs cannot tell this from a send in progress, and says so in one sentence.
  'delete-permission': [NONE, 'busy', 'busy'],
  'qgroup-quotas-off': [NONE, 'quotas_off', 'backend'],
  'qgroup-not-btrfs': [NONE, 'not_btrfs', 'backend'],
  'qgroup-inconsistent': [NONE, 'qgroup_unreliable', 'backend'],
  'qgroup-inconsistent-text': [NONE, 'qgroup_unreliable', 'backend'],
  'qgroup-show-json-with-limit': [NONE, 'other', 'backend'],
  'qgroup-show': [NONE, 'other', 'backend'],
  'qgroup-show-one': [NONE, 'other', 'backend'],
  'qgroup-show-text-with-limit': [NONE, 'other', 'backend'],
};

describe('btrfs stderr → StorageError (recorded fixtures)', () => {
  it('has an expectation for every recorded fixture', () => {
    const files = readdirSync(DIR)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length))
      .sort();
    expect(files).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const [name, [ctx, reason, code]] of Object.entries(EXPECTED)) {
    it(`${name}: ${reason} → ${code}`, () => {
      const f = load(name);
      expect(btrfsReason(f.stderr)).toBe(reason);
      const err = btrfsError(f.argv, f, ctx);
      expect(err).toBeInstanceOf(StorageError);
      expect([err.code, err.reason]).toEqual([code, reason]);
      expect(err.cause).toEqual({ argv: f.argv, exitCode: f.code, stderr: f.stderr });
    });
  }

  it('names the operation and quotes the ERROR line, not a WARNING before it', () => {
    expect(btrfsError(load('snapshot-no-space').argv, load('snapshot-no-space'), SNAPSHOT).message).toBe(
      "btrfs subvolume snapshot failed (exit 1): ERROR: cannot snapshot '<scratch>/mnt/vol': No space left on device",
    );
    expect(btrfsError(load('delete-permission').argv, load('delete-permission')).message).toBe(
      'btrfs subvolume delete failed (exit 1): ERROR: Could not destroy subvolume/snapshot: Operation not permitted',
    );
    expect(btrfsError(load('qgroup-show-json-with-limit').argv, load('qgroup-show-json-with-limit')).message).toMatch(
      /^btrfs qgroup show failed \(exit 134\): INTERNAL ERROR: unknown unit base/,
    );
    expect(btrfsError(['btrfs', 'subvolume', 'delete', '/x'], { code: 1, stderr: '' }).message).toBe(
      'btrfs subvolume delete failed (exit 1): no error text',
    );
  });
});

describe('btrfs qgroup output parsing (recorded)', () => {
  it('reads level-0 groups from JSON, numbers from strings, the top level as ""', () => {
    const rows = parseQgroupShow(load('qgroup-show').stdout);
    expect(rows[0]).toEqual({ subvolid: 5, exclusive: 16384, path: '' });
    expect(rows.find((r) => r.path === 'vol')).toEqual({ subvolid: 256, exclusive: 16384, path: 'vol' });
    expect(rows.find((r) => r.path === '.snapshots/es-3')).toEqual({ subvolid: 263, exclusive: 16384, path: '.snapshots/es-3' });
    expect(parseQgroupShow(load('qgroup-show-one').stdout)).toEqual([{ subvolid: 263, exclusive: 16384, path: '.snapshots/es-3' }]);
  });

  it('refuses the truncated JSON btrfs-progs 6.2 prints before it aborts, and other shapes', () => {
    expect(() => parseQgroupShow(load('qgroup-show-json-with-limit').stdout)).toThrow();
    expect(() => parseQgroupShow('{"qgroup-show": [{"qgroupid": "0/5", "exclusive": "1.5KiB", "path": ""}]}')).toThrow(/unexpected entry/);
    expect(() => parseQgroupShow('{"other": []}')).toThrow(/no "qgroup-show"/);
  });

  it('reads the --raw text table, paths with spaces included, and nothing with other columns', () => {
    expect(parseQgroupTable(load('qgroup-show-text-with-limit').stdout)).toEqual([
      { subvolid: 5, exclusive: 16384, path: '' },
      { subvolid: 256, exclusive: 16384, path: 'lim' },
      { subvolid: 257, exclusive: 16384, path: 'other' },
      { subvolid: 258, exclusive: 16384, path: '.snapshots/vm 1/disk0/es-1' },
    ]);
    // The human table of `qgroup show -re` (limit columns) and the human units are refused.
    const limits = 'Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n--------    ----------    ---------  --------------  -------------   ---- \n0/5  16384  16384  none  none  <toplevel>\n';
    expect(() => parseQgroupTable(limits)).toThrow(/unexpected table header/);
    const human = load('qgroup-inconsistent-text').stdout.replace('16384', '16.00KiB').replace(/ 0 /, ' 0.00B ');
    expect(() => parseQgroupTable(human)).toThrow(/unexpected row/);
    expect(parseQgroupTable(load('qgroup-inconsistent-text').stdout)).toEqual([
      { subvolid: 5, exclusive: 0, path: '' },
      { subvolid: 256, exclusive: 0, path: 'vol1' },
    ]);
  });

  it('matches the snapshots of one folder by name, the newest subvolume winning a shared path', () => {
    const rows = [
      { subvolid: 300, exclusive: 1, path: 'store/.snapshots/d/es-1' },
      { subvolid: 310, exclusive: 2, path: 'store/.snapshots/d/es-1' },
      { subvolid: 320, exclusive: 3, path: 'other/store/.snapshots/d/es-1' },
      { subvolid: 330, exclusive: 4, path: 'store/.snapshots/d/sub/es-1' },
      { subvolid: 340, exclusive: 5, path: 'store/.snapshots/d/as-2' },
      { subvolid: 350, exclusive: 6, path: 'store/.snapshots/dd/es-3' },
    ];
    expect(exclusiveByName(rows, 'store/.snapshots/d/', true)).toEqual(new Map([['es-1', 2], ['as-2', 5]]));
    // Place unknown: a suffix match, but es-1 is found under two places and is dropped.
    expect(exclusiveByName(rows, '.snapshots/d/', false)).toEqual(new Map([['as-2', 5]]));
    expect(exclusiveByName(rows, 'store/.snapshots/e/', true)).toEqual(new Map());
  });
});

describe('mountinfo: where a storage root sits in its btrfs', () => {
  // Lines as this machine printed them (the last one with an escaped space, as the kernel writes it).
  const info = [
    '1 0 254:0 / / rw,relatime - ext4 /dev/vda rw',
    '43 27 0:39 / /tmp/bx/mnt rw,relatime - btrfs /dev/loop0 rw,discard=async,space_cache=v2,subvolid=5,subvol=/',
    '56 27 0:39 /vms /tmp/bx/m3 rw,relatime - btrfs /dev/loop0 rw,discard=async,space_cache=v2,subvolid=451,subvol=/vms',
    '60 27 0:41 / /mnt/with\\040space rw shared:5 - btrfs /dev/loop1 rw,subvolid=5,subvol=/',
    '',
  ].join('\n');
  const mounts = parseMountInfo(info);

  it('parses mount root, mount point, type and source, optional fields and escapes included', () => {
    expect(mounts).toHaveLength(4);
    expect(mounts[2]).toEqual({ root: '/vms', mountpoint: '/tmp/bx/m3', fstype: 'btrfs', source: '/dev/loop0' });
    expect(mounts[3]).toEqual({ root: '/', mountpoint: '/mnt/with space', fstype: 'btrfs', source: '/dev/loop1' });
  });

  it('finds the mount by whole path segments and gives the path from the top level', () => {
    const at = (path: string): string | null => {
      const m = mountFor(mounts, path);
      return m && m.fstype === 'btrfs' ? topLevelPath(m, path) : null;
    };
    expect(at('/tmp/bx/mnt')).toBe('');
    expect(at('/tmp/bx/mnt/esnap-btrfs-x')).toBe('esnap-btrfs-x');
    expect(at('/tmp/bx/m3/store')).toBe('vms/store'); // mounted with subvol=vms
    expect(at('/tmp/bx/mnt2/store')).toBeNull(); // not below /tmp/bx/mnt: on the ext4 root
    expect(at('/mnt/with space/a b')).toBe('a b');
  });
});
