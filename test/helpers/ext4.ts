/**
 * Checks on an ext4 image that a snapshot copied from a guest's disk, with e2fsprogs on the host.
 *
 * Example:
 *   await expectCleanExt4(snapFile, '/marker.txt', marker);
 *   const { stdout } = await e2fs(['debugfs', '-R', 'cat /marker.txt', snapFile]);
 */
import { spawn } from 'node:child_process';
import { expect } from 'vitest';

/** Runs an e2fsprogs command (dumpe2fs, e2fsck, debugfs); its exit code is returned, not thrown. */
export function e2fs(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    const env = { ...process.env, PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin` }; // e2fsprogs live in sbin
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/**
 * A frozen ext4 has flushed its journal: the copy needs no recovery (a copy of the live, unfrozen
 * image shows needs_recovery and lacks data written without sync), checks clean, and its file
 * `path` holds `text`.
 */
export async function expectCleanExt4(image: string, path: string, text: string): Promise<void> {
  const features = (await e2fs(['dumpe2fs', '-h', image])).stdout.split('\n').find((l) => l.startsWith('Filesystem features:'));
  expect(features).toMatch(/has_journal/);
  expect(features).not.toMatch(/needs_recovery/);
  const fsck = await e2fs(['e2fsck', '-fn', image]);
  expect({ code: fsck.code, out: fsck.stdout + fsck.stderr }).toMatchObject({ code: 0 });
  expect((await e2fs(['debugfs', '-R', `cat ${path}`, image])).stdout).toBe(text);
}
