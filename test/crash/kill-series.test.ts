/**
 * Rollbacks and restores killed at random instants (the CI cut of `npm run crash-series`, see
 * kill-series.ts): after each kill -9 of the server's process group and a restart, the image holds
 * its old content or the snapshot's, nothing is left aside and the disk is not flagged damaged.
 * And a storage command whose agent was killed (only its PID) does not outlive the restart.
 *
 * Images are 512 MiB of data in a temp dir (ext4 here: no reflinks, so the file driver copies and
 * the kills land inside the copy); the full series runs 2 GiB images, 20 kills per operation.
 */
import { describe, expect, it } from 'vitest';
import { mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep, startServe, waitOutput, type EsnapServe } from '../helpers/esnap-process.js';
import { qemuUnavailable } from '../platform/qemu.js';
import { requirePlatform } from '../platform/require.js';
import { runKillSeries, type SeriesDriver, type SeriesOp } from './kill-series.js';

const CASES: ReadonlyArray<readonly [SeriesDriver, SeriesOp, number]> = [
  ['file', 'rollback', 2],
  ['file', 'restore', 2],
  ['qcow2', 'restore', 3],
];

describe('kill -9 in the middle of a rollback or restore', () => {
  for (const [driver, op, kills] of CASES) {
    it(`${driver} ${op}: ${kills} kills, the image is old or new each time`, async (ctx) => {
      if (!requirePlatform(await qemuUnavailable())) return ctx.skip(); // qemu-img compares the images
      const report = await runKillSeries({ driver, op, kills, sizeMiB: 512 });
      for (const o of report.outcomes) {
        expect(o.state, `kill at ${o.atMs} ms of ${report.opMs}`).not.toBe('other');
        expect(o.leftovers, `kill at ${o.atMs} ms`).toEqual([]);
        expect(o.usable, `kill at ${o.atMs} ms`).toBe(true);
      }
      expect(report.outcomes).toHaveLength(kills);
    }, 240_000);
  }
});

/** `cp` children of `ppid` (from /proc/<ppid>/task/<ppid>/children: one read), with their start times. */
async function cpChildren(ppid: number): Promise<Array<{ pid: number; start: string }>> {
  const kids = (await readFile(`/proc/${ppid}/task/${ppid}/children`, 'utf8').catch(() => '')).split(' ').filter((p) => p !== '');
  const out: Array<{ pid: number; start: string }> = [];
  for (const pid of kids.map(Number)) {
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
    const start = await startOf(pid);
    if (comm === 'cp' && start !== null) out.push({ pid, start });
  }
  return out;
}

async function startOf(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' ? null : fields[19]!;
}

it('a copy left running by a killed agent (PID only) is ended by the restart, before it takes tasks', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-leftover-'));
  const env = { ESNAP_DATA_DIR: dir, ESNAP_ADMIN_API_KEY: 'leftover-admin-key-0123456789abcdef', ESNAP_NODE: 'leftnode', ESNAP_LOCAL_AGENT: '1' };
  let server: EsnapServe | null = await startServe(env, { group: true });
  let cp: { pid: number; start: string } | undefined;
  try {
    expect((await server.api('POST', '/api/vm/lvm/define/', {})).status).toBe(201);
    expect((await server.api('POST', '/api/vm/lvm/define/disk/1/', { size: 512 })).status).toBe(201);
    const path = (await server.api('GET', '/api/vm/lvm/define/disk/1/')).body.result.path as string;
    const fh = await open(join(dir, 'storage', path), 'r+');
    for (let i = 0; i < 512; i++) await fh.write(Buffer.alloc(1024 * 1024, i), 0, 1024 * 1024, i * 1024 * 1024);
    await fh.close();
    const snap = await server.api('POST', '/api/vm/lvm/snapshot/base/', {});
    for (let i = 0; i < 1200 && (await server.api('GET', `/api/task/${snap.body.task_id}/status/`)).body.status !== 'SUCCESS'; i++) await sleep(50);
    // The rollback's copy runs (a sparse `cp` on this filesystem): freeze it, so that it can neither
    // finish on its own nor go on writing, and kill only the server's PID, as `kill -9 <pid>` does.
    expect((await server.api('PUT', '/api/vm/lvm/snapshot/base/', { force: true })).status).toBe(201);
    for (let i = 0; i < 3000 && !cp; i++) {
      cp = (await cpChildren(server.proc.pid!))[0];
      if (!cp) await sleep(2);
    }
    expect(cp, 'the rollback started a cp').toBeDefined();
    // The agent records a command right after spawning it (child-records.ts); a kill in that short
    // window is the documented gap, not what this test is about: wait for the record first.
    const record = join(dir, 'run', 'children', String(cp!.pid));
    // Under load the agent can be off the CPU between the fork and that write for over a second
    // (CI once: the record was not there after 1 s, the kill landed in the gap, and nothing was
    // reaped): wait for it, bounded, and require it.
    for (let i = 0; i < 1500 && !(await stat(record).catch(() => null)); i++) await sleep(20);
    expect(await stat(record).catch(() => null), 'the agent recorded the cp').not.toBeNull();
    process.kill(cp!.pid, 'SIGSTOP');
    await server.stop('SIGKILL');
    server = null;
    expect(await startOf(cp!.pid), 'the cp outlived its agent').toBe(cp!.start);

    server = await startServe(env, { group: true });
    // Ended at start-up, not left to resume writing into the disk. The server may answer before its
    // local agent has finished starting (the reap runs first in the agent's start-up): wait for the
    // agent's own word that it ended the leftovers (a fixed 15 s was too short under CI load once),
    // then for the process to be gone; a copy that is never ended still fails here.
    await waitOutput(server, 'ended storage commands left running by the previous agent', 120_000);
    for (let i = 0; i < 150 && (await startOf(cp!.pid)) !== null; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await startOf(cp!.pid)).toBeNull();
    const records = await readdir(join(dir, 'run', 'children')).catch(() => []);
    expect(records).toEqual([]);
  } finally {
    if (cp && (await startOf(cp.pid)) === cp.start) process.kill(cp.pid, 'SIGKILL');
    await server?.killGroup();
    await rm(dir, { recursive: true, force: true });
  }
}, 180_000);
