/**
 * hashGrowingFile: the SHA-256 of a file read while a real process writes it (as `restic dump >
 * file` does in a type 2 restore). The writer is a child Node process that writes random chunks
 * to its stdout (the file) with pauses, so the hash catches up with it and waits many times.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hashGrowingFile } from '../../src/backups/image-hash.js';

const WRITER = `
const { randomBytes } = require('node:crypto');
const { writeSync } = require('node:fs');
const [chunks, size, pauseMs, code] = process.argv.slice(1).map(Number);
const wait = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
for (let i = 0; i < chunks; i++) {
  const b = randomBytes(size);
  for (let off = 0; off < b.length; ) off += writeSync(1, b, off, b.length - off);
  wait(pauseMs);
}
process.exit(code);
`;

/** Runs the writer with its stdout on the file; resolves with its exit code. */
function writeInto(fd: number, chunks: number, size: number, pauseMs: number, code = 0): Promise<number | null> {
  const child = spawn(process.execPath, ['-e', WRITER, String(chunks), String(size), String(pauseMs), String(code)], { stdio: ['ignore', fd, 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  });
}

describe('hashGrowingFile', () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = null;
  });

  it.each([
    ['many small chunks with pauses (the hash waits for the writer)', 200, 64 * 1024 + 7, 3],
    ['chunks larger than its read size', 6, 9 * 1024 * 1024 + 13, 20],
    ['a writer faster than the hash', 64, 1024 * 1024, 0],
  ])('hashes exactly what the writer wrote: %s', async (_label, chunks, size, pauseMs) => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-hashgrow-'));
    const path = join(dir, 'image');
    const fh = await open(path, 'w+');
    try {
      const written = writeInto(fh.fd, chunks, size, pauseMs);
      const [code, digest] = await Promise.all([written, hashGrowingFile(fh, written)]);
      expect(code).toBe(0);
      const bytes = await readFile(path);
      expect(bytes.length).toBe(chunks * size);
      expect(digest).toBe(createHash('sha256').update(bytes).digest('hex'));
    } finally {
      await fh.close();
    }
  });

  it('ends when the writer fails, with the hash of what it wrote', async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-hashgrow-'));
    const path = join(dir, 'image');
    const fh = await open(path, 'w+');
    try {
      const written = writeInto(fh.fd, 5, 100_000, 2, 3);
      const [code, digest] = await Promise.all([written, hashGrowingFile(fh, written)]);
      expect(code).toBe(3);
      expect(digest).toBe(createHash('sha256').update(await readFile(path)).digest('hex'));
    } finally {
      await fh.close();
    }
  });
});
