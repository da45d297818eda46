/**
 * The test helper's promise: an `esnap serve` started in a process group of its own does not
 * outlive the test process, whether that process exits or is stopped with SIGTERM (a timed-out
 * chaos run once left its servers and agents running for an hour). A real child process runs the
 * compiled helper and starts a real server; the test ends the child and looks for the server.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { sleep } from './esnap-process.js';

const HELPER = pathToFileURL(join(process.cwd(), 'dist/test/helpers/esnap-process.js')).href;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('esnap processes in a group of their own', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  for (const end of ['exit', 'SIGTERM'] as const) {
    it(`go when the process that started them ends (${end})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'esnap-reap-'));
      dirs.push(dir);
      const script = join(dir, 'starter.mjs');
      await writeFile(
        script,
        `import { spawnEsnap, waitOutput } from ${JSON.stringify(HELPER)};
const p = spawnEsnap(['serve'], { ESNAP_LISTEN: '127.0.0.1:0', ESNAP_DATA_DIR: ${JSON.stringify(join(dir, 'data'))}, ESNAP_LOCAL_AGENT: '0' }, { group: true });
await waitOutput(p, 'esnap listening', 120000);
console.log('server ' + p.proc.pid);
${end === 'exit' ? 'process.exit(0);' : 'setInterval(() => undefined, 1000);'}
`,
      );
      const child = spawn(process.execPath, [script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise<void>((r) => child.once('close', () => r()));
      let out = '';
      const pid = await new Promise<number>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /server (\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.once('close', () => reject(new Error(`starter ended without a server: ${out}`)));
      });
      expect(alive(pid)).toBe(true);
      if (end === 'SIGTERM') child.kill('SIGTERM');
      await exited;
      // SIGKILL of a group is immediate; the kernel reaps the zombie once its parent (gone) is replaced.
      for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
      expect(alive(pid), `esnap serve ${pid} still runs after its starter's ${end}`).toBe(false);
    }, 180_000);
  }
});
