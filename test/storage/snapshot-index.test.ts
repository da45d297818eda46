/**
 * The per-disk snapshot index (btrfs and qcow2 drivers) as a file format, on a plain temp folder (no btrfs needed):
 * last record wins, tombstones, torn records, and compaction that keeps exactly the live records.
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendIndex, compactIfLarge, parseIndex, prepareAppend, readIndex, readIndexCached, undoAppend } from '../../src/storage/snapshot-index.js';

describe('btrfs snapshot index', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-btrfs-index-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the last record of an id, drops tombstoned ids, and reads a missing index as empty', async () => {
    expect(readIndex(dir)).toEqual(new Map());
    const t = new Date('2026-11-27T10:00:00.123Z');
    appendIndex(dir, [{ id: 'es-1', name: 'one', created: t }, { id: 'es-2', name: 'two', created: t }]);
    appendIndex(dir, [{ id: 'es-1', deleted: true }]);
    appendIndex(dir, [{ id: 'es-3', name: null, created: null }, { id: 'es-2', name: 'again', created: t }]);
    expect(readIndex(dir)).toEqual(
      new Map([
        ['es-2', { name: 'again', created: t }],
        ['es-3', { name: null, created: null }],
      ]),
    );
  });

  it('skips torn and foreign lines, and a record after a torn one is read', () => {
    const text = [
      '',
      '{"id":"es-1","name":"ok","created":"2026-11-27T10:00:00.000Z"}',
      '{"id":"es-2","name":"cut',
      '\u0000\u0000\u0000',
      '[1,2]',
      '{"name":"no id"}',
      '{"id":"es-3","name":7,"created":"not a date"}',
      '{"id":"es-4","name":"after","created":"2026-11-27T10:00:01.000Z"}',
    ].join('\n');
    expect(parseIndex(text)).toEqual(
      new Map([
        ['es-1', { name: 'ok', created: new Date('2026-11-27T10:00:00.000Z') }],
        ['es-3', { name: null, created: null }],
        ['es-4', { name: 'after', created: new Date('2026-11-27T10:00:01.000Z') }],
      ]),
    );
  });

  it('compacts only past 64 KiB and twice the last compacted size, keeping exactly the live records', async () => {
    const t = new Date('2026-11-27T10:00:00.000Z');
    const ids = Array.from({ length: 1200 }, (_, i) => `es-${i + 1}`);
    let { size } = appendIndex(dir, ids.map((id) => ({ id, name: `name of ${id}`, created: t })));
    expect(size).toBeGreaterThan(64 * 1024);
    // Destroy all but every tenth snapshot.
    const gone = new Set(ids.filter((_, i) => i % 10 !== 0));
    ({ size } = appendIndex(dir, [...gone].map((id) => ({ id, deleted: true as const }))));
    const before = readIndex(dir);
    // es-11 lost its folder without a tombstone (a crash after the delete): dropped too.
    expect(await compactIfLarge(dir, size, (id) => !gone.has(id) && id !== 'es-11')).toBe(true);
    const after = readIndex(dir);
    expect([...after.keys()]).toEqual([...before.keys()].filter((id) => id !== 'es-11'));
    expect(after.get('es-1')).toEqual({ name: 'name of es-1', created: t });
    const compacted = (await stat(join(dir, '.esnap-index'))).size;
    expect(compacted).toBeLessThan(size / 5);
    expect(await readdir(dir)).toEqual(['.esnap-index']); // no temporary left
    expect((await readFile(join(dir, '.esnap-index'), 'utf8')).split('\n')[0]).toMatch(/^\{"esnapIndex":1,"base":\d+\}$/);
    // Small, or not yet twice the compacted size: left alone.
    expect(await compactIfLarge(dir, compacted, () => true)).toBe(false);
    expect(await compactIfLarge(dir, 70 * 1024, () => true)).toBe(compacted * 2 < 70 * 1024);
  });

  it('re-compacts a large live index only after it has doubled', async () => {
    const t = new Date('2026-11-27T10:00:00.000Z');
    const ids = Array.from({ length: 1500 }, (_, i) => `es-${i + 1}`);
    const { size } = appendIndex(dir, ids.map((id) => ({ id, name: 'x'.repeat(40), created: t })));
    expect(await compactIfLarge(dir, size, () => true)).toBe(true); // no header yet: compacted, header written
    const base = (await stat(join(dir, '.esnap-index'))).size;
    expect(await compactIfLarge(dir, base + 1000, () => true)).toBe(false);
    expect(await compactIfLarge(dir, base * 2 + 100, () => true)).toBe(true);
    expect(readIndex(dir).size).toBe(1500);
  });

  it('the cached read answers what readIndex reads, after appends, an undo, a compaction and a removal; unchanged, the same map', async () => {
    const t = new Date('2026-11-27T10:00:00.000Z');
    const same = async () => {
      const cached = await readIndexCached(dir);
      expect(new Map(cached)).toEqual(readIndex(dir));
      return cached;
    };
    expect((await same()).size).toBe(0);
    appendIndex(dir, [{ id: 'es-1', name: 'one', created: t }]);
    const one = await same();
    expect(one.get('es-1')).toEqual({ name: 'one', created: t });
    expect(await readIndexCached(dir)).toBe(one); // not read again
    const second = appendIndex(dir, [{ id: 'es-1', name: 'renamed', created: t }]);
    expect((await same()).get('es-1')?.name).toBe('renamed');
    undoAppend(dir, second);
    expect((await same()).get('es-1')?.name).toBe('one');
    const ids = Array.from({ length: 1200 }, (_, i) => `es-${i + 2}`);
    const { size } = appendIndex(dir, ids.map((id) => ({ id, name: `n ${id}`, created: t })));
    const full = await same();
    expect(full.size).toBe(1201);
    expect(await compactIfLarge(dir, size, (id) => id !== 'es-1' && id !== 'es-2')).toBe(true);
    const compacted = await same();
    expect(compacted.size).toBe(1199);
    expect(compacted.has('es-1')).toBe(false);
    await rm(join(dir, '.esnap-index'));
    expect((await same()).size).toBe(0);
  });

  it('undoAppend takes an append back, removing the file when the append made it', async () => {
    const t = new Date('2026-11-27T10:00:00.000Z');
    const first = appendIndex(dir, [{ id: 'es-1', name: 'one', created: t }]);
    const before = await readFile(join(dir, '.esnap-index'), 'utf8');
    const second = appendIndex(dir, [{ id: 'es-2', name: 'two', created: t }]);
    undoAppend(dir, second);
    expect(await readFile(join(dir, '.esnap-index'), 'utf8')).toBe(before);
    undoAppend(dir, first);
    expect(await readdir(dir)).toEqual([]);
  });

  it('a prepared append writes what appendIndex would, only on commit, and reads the compaction header ahead', async () => {
    const t = new Date('2026-11-27T10:00:00.000Z');
    const other = await mkdtemp(join(tmpdir(), 'esnap-btrfs-index-'));
    try {
      // No index yet: preparing creates nothing, commit creates it exactly as appendIndex does.
      const first = prepareAppend(dir, [{ id: 'es-1', name: 'one', created: t }]);
      expect(first.base).toBe(0);
      expect(await readdir(dir)).toEqual([]);
      expect(first.commit()).toEqual(appendIndex(other, [{ id: 'es-1', name: 'one', created: t }]));
      expect(await readFile(join(dir, '.esnap-index'), 'utf8')).toBe(await readFile(join(other, '.esnap-index'), 'utf8'));
      // An existing index: abandoned, it is untouched; committed, it has the records appended.
      const before = await readFile(join(dir, '.esnap-index'), 'utf8');
      prepareAppend(dir, [{ id: 'es-1', deleted: true }]).abandon();
      expect(await readFile(join(dir, '.esnap-index'), 'utf8')).toBe(before);
      const gone = prepareAppend(dir, [{ id: 'es-1', deleted: true }]);
      const appended = gone.commit();
      expect(appended).toEqual(appendIndex(other, [{ id: 'es-1', deleted: true }]));
      expect(readIndex(dir)).toEqual(new Map());
      undoAppend(dir, appended);
      expect(readIndex(dir)).toEqual(new Map([['es-1', { name: 'one', created: t }]]));
      // After a compaction, the header's live size is read at prepare time.
      const ids = Array.from({ length: 1200 }, (_, i) => `es-${i + 2}`);
      const { size } = appendIndex(dir, ids.map((id) => ({ id, name: `name of ${id}`, created: t })));
      expect(await compactIfLarge(dir, size, () => true)).toBe(true);
      const header = JSON.parse((await readFile(join(dir, '.esnap-index'), 'utf8')).split('\n')[0]!) as { base: number };
      const compacted = prepareAppend(dir, [{ id: 'es-2', deleted: true }]);
      expect(compacted.base).toBe(header.base);
      compacted.commit();
      expect(readIndex(dir).has('es-2')).toBe(false);
      expect(readIndex(dir).size).toBe(1200);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('an unreadable index lists as empty instead of failing', async () => {
    await writeFile(join(dir, '.esnap-index'), Buffer.from([0xff, 0xfe, 0x00]));
    expect(readIndex(dir)).toEqual(new Map());
  });
});
