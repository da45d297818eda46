/**
 * The queue contract: what the server and agents rely on, run against every TaskQueue adapter
 * (in-process and pg-boss). Each test uses a node of its own, so tests do not see each other's
 * messages.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { QueueMessage, TaskQueue } from '../../src/queue/queue.js';
import { systemClock } from '../../src/app-context.js';
import { LocalTaskEvents } from '../../src/tasks/task.events.js';
import { TaskService } from '../../src/tasks/task.service.js';
import type { TaskOutcome } from '../../src/tasks/task.types.js';
import { silentLogger } from '../../src/runtime.js';
import { withServer, type TestDb } from '../helpers/server.js';
import { SYSTEM_TASK } from '../helpers/task-fixtures.js';

export interface QueueFactory {
  readonly name: string;
  /** A new queue instance; instances of one factory share their backing store, if any. */
  open(): Promise<TaskQueue>;
  /** Messages survive stop() and a new instance (pg-boss); the in-process queue's store is the task table. */
  readonly persistent: boolean;
  /** withdraw() answers false once a worker has the message (pg-boss); in-process relies on the task claim. */
  readonly exactWithdraw: boolean;
  /** The database the queue is used with (tasks, locks): SQLite in embedded mode, PostgreSQL with pg-boss. */
  readonly db: TestDb;
  cleanup(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let seq = 0;
const node = () => `contract-${process.pid}-${++seq}`;
const msg = (taskId: string): QueueMessage => ({ taskId, kind: 'noop', payload: { op: 'noop', n: taskId } });

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

const MARK = 'end-marker';

/**
 * "Nothing else arrives", without a sleep: a marker sent last is delivered after every message
 * sent before it (in order, the first test below), and stop() waits for the handlers in flight.
 * Once the marker has arrived and the queue has stopped, any extra delivery of an earlier message
 * is already in `got`. Returns what arrived before the marker. Needs concurrency 1 for the order.
 */
async function untilMarker(q: TaskQueue, n: string, got: string[]): Promise<string[]> {
  await q.send(n, msg(MARK));
  await until(() => got.includes(MARK));
  await q.stop();
  expect(got.at(-1)).toBe(MARK);
  return got.slice(0, -1);
}

export function queueContract(f: QueueFactory): void {
  describe(`queue contract [${f.name}]`, () => {
    const open: TaskQueue[] = [];
    const openQueue = async () => {
      const q = await f.open();
      open.push(q);
      return q;
    };
    afterAll(async () => {
      for (const q of open) await q.stop();
      await f.cleanup();
    });

    it('delivers every message once, in the order sent, with its payload', async () => {
      const q = await openQueue();
      const n = node();
      const sent = Array.from({ length: 20 }, (_, i) => `t${i}`);
      for (const id of sent) await q.send(n, msg(id));
      const got: QueueMessage[] = [];
      const ids: string[] = [];
      await q.work(
        n,
        async (m) => {
          got.push(m);
          ids.push(m.taskId);
        },
        { concurrency: 1 },
      );
      await until(() => got.length === sent.length);
      expect(await untilMarker(q, n, ids)).toEqual(sent);
      expect(got[3]).toEqual(msg('t3'));
    });

    it('runs at most `concurrency` handlers at once, and uses all of them', async () => {
      const q = await openQueue();
      const n = node();
      let active = 0;
      let peak = 0;
      let done = 0;
      await q.work(
        n,
        async () => {
          active++;
          peak = Math.max(peak, active);
          await sleep(40);
          active--;
          done++;
        },
        { concurrency: 3 },
      );
      for (let i = 0; i < 12; i++) await q.send(n, msg(`c${i}`));
      await until(() => done === 12);
      expect(peak).toBe(3);
      await q.stop();
    });

    it('stop() waits for the handlers in flight', async () => {
      const q = await openQueue();
      const n = node();
      let started = false;
      let finished = false;
      await q.work(n, async () => {
        started = true;
        await sleep(300);
        finished = true;
      });
      await q.send(n, msg('slow'));
      await until(() => started);
      await q.stop();
      expect(finished).toBe(true);
    });

    it('depth counts messages sent and not yet taken', async () => {
      const q = await openQueue();
      const n = node();
      expect(await q.depth(n)).toBe(0);
      for (let i = 0; i < 4; i++) await q.send(n, msg(`d${i}`));
      expect(await q.depth(n)).toBe(4);
      let got = 0;
      await q.work(n, async () => void got++);
      await until(() => got === 4);
      expect(await q.depth(n)).toBe(0);
      await q.stop();
    });

    it('sendMany (where the queue has it) queues each message once, a repeat included, and delivers them all', async () => {
      const q = await openQueue();
      if (!q.sendMany) return;
      const n = node();
      // More than one bulk statement (1,000 jobs each in pg-boss).
      const ids = Array.from({ length: 1200 }, (_, i) => `m${i}`);
      await q.sendMany(n, ids.map(msg));
      await q.sendMany(n, ids.slice(0, 10).map(msg));
      expect(await q.depth(n)).toBe(ids.length);
      const got: string[] = [];
      await q.work(n, async (m) => void got.push(m.taskId), { concurrency: 8 });
      await until(() => got.length >= ids.length, 60_000);
      expect([...got].sort()).toEqual([...ids].sort());
      await q.stop();
    }, 90_000);

    it('a message withdrawn before any worker takes it never runs', async () => {
      const q = await openQueue();
      const n = node();
      await q.send(n, msg('keep'));
      await q.send(n, msg('drop'));
      expect(await q.withdraw(n, 'drop')).toBe(true);
      expect(await q.depth(n)).toBe(1);
      const got: string[] = [];
      await q.work(n, async (m) => void got.push(m.taskId), { concurrency: 1 });
      expect(await untilMarker(q, n, got)).toEqual(['keep']);
    });

    it('a handler that throws does not stop the worker', async () => {
      const q = await openQueue();
      const n = node();
      const got: string[] = [];
      await q.work(n, async (m) => {
        got.push(m.taskId);
        if (m.taskId === 'boom') throw new Error('handler failure');
      });
      await q.send(n, msg('boom'));
      await q.send(n, msg('after'));
      await until(() => got.length === 2);
      expect(got.sort()).toEqual(['after', 'boom']);
      await q.stop();
    });

    it('a cancel racing an agent claim never revokes the claimed task (TaskService on this queue)', async () => {
      // The agent claims the task between the cancel's read of PENDING and its completion: the
      // wrapped withdraw lets the worker take and claim the message first, then withdraws.
      const s = await withServer(f.db, { localAgent: false });
      try {
        const db = s.runtime.ctx.db;
        const n = node();
        const now = new Date().toISOString();
        const nodeId = (
          await db.insertInto('node').values({ hostname: n, uuid: randomUUID(), status: 2, last_heartbeat: now, created: now }).returning('id').executeTakeFirstOrThrow()
        ).id;
        const q = await openQueue();
        let claimed = false;
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const outcomes: TaskOutcome[] = [];
        const racing: TaskQueue = {
          send: (nd, m) => q.send(nd, m),
          work: (nd, h, o) => q.work(nd, h, o),
          stop: () => q.stop(),
          depth: (nd) => q.depth(nd),
          async withdraw(nd, taskId) {
            await q.work(nd, async (m) => {
              if (!(await tasks.markStarted(m.taskId))) return;
              claimed = true;
              await gate;
              await tasks.complete(m.taskId, { returncode: 0, message: 'done', detail: '' });
            });
            await until(() => claimed);
            return q.withdraw(nd, taskId);
          },
        };
        const tasks = new TaskService(db, racing, new LocalTaskEvents(), systemClock, silentLogger);
        tasks.registerKind('contract_race', {
          complete: async (_trx, _task, _ctx, outcome) => {
            outcomes.push(outcome);
            return { result: { returncode: outcome.returncode, message: outcome.message } };
          },
        });
        const lock = `contract race ${n}`;
        const taskId = await tasks.submit({
          kind: 'contract_race',
          type: 'e',
          ...SYSTEM_TASK,
          node: { id: nodeId, hostname: n },
          locks: [lock],
          apiview: { view: 'contract' },
          log: { msg: 'Contract race', detail: '', object: { type: 'vm', name: n, alias: n, pk: n } },
          prepare: async () => ({ payload: { op: 'noop' }, context: {} }),
        });

        expect(await tasks.cancel(taskId)).toBe(false);
        // The claimed task runs on: still STARTED, its lock held, no cleanup ran.
        expect((await tasks.get(taskId))?.state).toBe('STARTED');
        expect(await db.selectFrom('task_lock').select('key').where('key', '=', lock).execute()).toHaveLength(1);
        expect(outcomes).toEqual([]);
        release();
        await until(() => outcomes.length > 0);
        await sleep(50);
        expect((await tasks.get(taskId))?.state).toBe('SUCCESS');
        expect(outcomes.map((o) => o.returncode)).toEqual([0]);
        await q.stop();
      } finally {
        await s.cleanup();
      }
    });

    if (f.exactWithdraw) {
      it('withdraw answers false once a worker has the message', async () => {
        const q = await openQueue();
        const n = node();
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        let started = false;
        await q.work(n, async () => {
          started = true;
          await gate;
        });
        await q.send(n, msg('taken'));
        await until(() => started);
        expect(await q.withdraw(n, 'taken')).toBe(false);
        release();
        await q.stop();
      });

      it('sending the same task twice delivers it once', async () => {
        const q = await openQueue();
        const n = node();
        await q.send(n, msg('twice'));
        await q.send(n, msg('twice'));
        expect(await q.depth(n)).toBe(1);
        const got: string[] = [];
        await q.work(n, async (m) => void got.push(m.taskId), { concurrency: 1 });
        expect(await untilMarker(q, n, got)).toEqual(['twice']);
      });
    }

    if (f.persistent) {
      it('loses nothing across stop and a new instance: taken messages finish, the rest wait', async () => {
        const n = node();
        const q1 = await openQueue();
        const sent = Array.from({ length: 10 }, (_, i) => `p${i}`);
        for (const id of sent) await q1.send(n, msg(id));
        const got: string[] = [];
        await q1.work(
          n,
          async (m) => {
            await sleep(30);
            got.push(m.taskId);
          },
          { concurrency: 1 },
        );
        await until(() => got.length >= 2);
        await q1.stop();
        const afterStop = got.length;
        expect(afterStop).toBeLessThan(10);
        const q2 = await openQueue();
        expect(await q2.depth(n)).toBe(10 - afterStop);
        await q2.work(n, async (m) => void got.push(m.taskId), { concurrency: 1 });
        expect([...(await untilMarker(q2, n, got))].sort()).toEqual([...sent].sort());
      });
    }
  });
}
