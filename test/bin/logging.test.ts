/**
 * What `esnap serve` writes on standard output (what `journalctl -u esnap` keeps): JSON lines from
 * pino, one line per ended task (the audit trail: id, user, VM, operation, outcome, duration; a
 * failure at warning level with its cause), the start-up line with the bound port when
 * ESNAP_LISTEN asks for port 0, and at ESNAP_LOG_LEVEL=debug every command the agent runs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startServe, waitOutput, type EsnapServe } from '../helpers/esnap-process.js';
import { newServeData, type ServeData } from '../helpers/serve-data.js';
import { waitFor } from '../cluster/cluster.helpers.js';

type Line = Record<string, unknown>;

/** The JSON lines of the output (the bootstrap key's text is not JSON and is left out). */
function jsonLines(s: EsnapServe): Line[] {
  return s
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
}

const ended = (s: EsnapServe, taskId: string) => jsonLines(s).filter((l) => l['msg'] === 'task ended' && l['taskId'] === taskId);

async function finalStatus(s: EsnapServe, taskId: string): Promise<{ status: string; result: { message: string; detail?: string } }> {
  return waitFor(`task ${taskId}`, async () => {
    const r = await s.api('GET', `/api/task/${taskId}/status/`);
    return r.status === 201 ? null : r.body;
  }, 30_000, 50);
}

/** A task's line shows up just after its end is committed: wait for it, then check there is exactly one. */
async function endedLine(s: EsnapServe, taskId: string): Promise<Line> {
  await waitOutput(s, `"taskId":"${taskId}"`, 10_000);
  const lines = ended(s, taskId);
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

describe('esnap serve logging', () => {
  let data: ServeData | null = null;
  let s: EsnapServe | null = null;
  afterEach(async () => {
    await s?.stop('SIGKILL');
    await data?.cleanup();
    s = null;
    data = null;
  });

  it('ends every task in one line: a create at info, a failing task at warning with its cause', async () => {
    data = await newServeData('sqlite', { prefix: 'esnap-log-', node: 'lognode' });
    s = await startServe(data.env);
    // ESNAP_LISTEN 127.0.0.1:0: the start-up line names the port the system chose.
    expect(s.port).toBeGreaterThan(0);
    expect((await fetch(`${s.url}/api/vm/`)).status).toBe(403);
    // The default level is info: the agent's commands and the requests are not logged.
    expect((await s.api('POST', '/api/vm/logvm/define/', {})).status).toBe(201);
    // A disk's POST waits for its task (disk_create) and answers with the disk.
    expect((await s.api('POST', '/api/vm/logvm/define/disk/1/', { size: 4 })).status).toBe(201);
    const vm = (await s.api('GET', '/api/vm/logvm/define/')).body.result as { uuid: string };

    const created = await s.api('POST', '/api/vm/logvm/snapshot/first/', {});
    expect(created.status).toBe(201);
    const createId = created.body.task_id as string;
    expect((await finalStatus(s, createId)).status).toBe('SUCCESS');
    const ok = await endedLine(s, createId);
    expect(ok).toMatchObject({ level: 'info', taskId: createId, user: 'admin', vm: 'logvm', vmUuid: vm.uuid, operation: 'snapshot_create', outcome: 'SUCCESS' });
    expect(ok['durationMs']).toEqual(expect.any(Number));
    expect(ok['durationMs']).toBeGreaterThanOrEqual(0);
    expect(ok).not.toHaveProperty('cause');

    // The second disk's image path is taken by a directory: the storage refuses, the task fails
    // (the POST answers with the failure, under a dummy task id).
    await mkdir(join(data.dir, 'storage', `${vm.uuid}-disk1`));
    const bad = await s.api('POST', '/api/vm/logvm/define/disk/2/', { size: 4 });
    expect(bad.body.status).toBe('FAILURE');
    const message = bad.body.result as string;
    await waitOutput(s, '"outcome":"FAILURE"', 10_000);
    const disks = jsonLines(s).filter((l) => l['msg'] === 'task ended' && l['operation'] === 'disk_create');
    expect(disks.map((l) => [l['level'], l['outcome']])).toEqual([
      ['info', 'SUCCESS'],
      ['warn', 'FAILURE'],
    ]);
    const failed = disks[1]!;
    expect(failed).toMatchObject({ user: 'admin', vm: 'logvm', vmUuid: vm.uuid, durationMs: expect.any(Number) });
    expect(failed['cause']).toEqual(expect.stringContaining(message));
    expect(message).not.toBe('');
    expect(ended(s, String(failed['taskId']))).toHaveLength(1);

    // Three tasks, three lines; nothing below info at the default level.
    expect(jsonLines(s).filter((l) => l['msg'] === 'task ended')).toHaveLength(3);
    expect(jsonLines(s).filter((l) => l['level'] === 'debug')).toEqual([]);
  }, 60_000);

  it('at ESNAP_LOG_LEVEL=debug, logs each command of the agent with its argv and duration', async () => {
    data = await newServeData('sqlite', { prefix: 'esnap-log-', node: 'lognode' });
    s = await startServe({ ...data.env, ESNAP_LOG_LEVEL: 'debug' });
    expect((await s.api('POST', '/api/vm/dbgvm/define/', {})).status).toBe(201);
    expect((await s.api('POST', '/api/vm/dbgvm/define/disk/1/', { size: 4 })).status).toBe(201);
    const created = await s.api('POST', '/api/vm/dbgvm/snapshot/snap1/', {});
    expect((await finalStatus(s, created.body.task_id)).status).toBe('SUCCESS');
    // A rollback first checks that no QEMU holds the image: a qemu-img/qemu-io probe through the agent's runner.
    const rolled = await s.api('PUT', '/api/vm/dbgvm/snapshot/snap1/', { disk_id: 1, force: true });
    expect(rolled.status).toBe(201);
    await finalStatus(s, rolled.body.task_id);
    await endedLine(s, rolled.body.task_id);
    const commands = jsonLines(s).filter((l) => l['msg'] === 'command' || l['msg'] === 'command failed');
    expect(commands.length).toBeGreaterThan(0);
    for (const c of commands) {
      expect(c['level']).toBe('debug');
      expect(c['argv']).toEqual(expect.arrayContaining([expect.any(String)]));
      expect(c['durationMs']).toEqual(expect.any(Number));
    }
    expect(commands.some((c) => /^qemu-(img|io)$/.test(String((c['argv'] as string[])[0])))).toBe(true);
    // And each request in one debug line.
    expect(jsonLines(s).some((l) => l['msg'] === 'request' && l['level'] === 'debug' && l['url'] === '/api/vm/dbgvm/snapshot/snap1/' && l['statusCode'] === 201)).toBe(true);
  }, 60_000);
});
