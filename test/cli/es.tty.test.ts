/**
 * The terminal branch of es, in-process with injected isTTY flags against a real server: a
 * spinner with the elapsed time instead of dots, colour for the status; and none of it when the
 * streams are not terminals, TERM is dumb or NO_COLOR is set.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type CliIo } from '../../src/cli/main.js';
import { ADMIN_KEY, withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';
import { fakeServer, makeTmp, until } from './es-helpers.js';

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

interface Captured {
  stdout: string;
  stderr: string;
}

describe('es on a terminal', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  let tmp: ReturnType<typeof makeTmp>;

  beforeAll(async () => {
    s = await withServer('sqlite');
    tmp = makeTmp();
    await makeVm(s, 'web01', { disks: [4] });
  });
  afterAll(async () => {
    await s.cleanup();
    tmp.cleanup();
  });

  function io(tty: { out: boolean; err: boolean }, env: Record<string, string> = {}, extra: Partial<CliIo> = {}): { io: CliIo; cap: Captured } {
    const cap: Captured = { stdout: '', stderr: '' };
    return {
      cap,
      io: {
        stdout: { write: (x: string) => (cap.stdout += x), isTTY: tty.out },
        stderr: { write: (x: string) => (cap.stderr += x), isTTY: tty.err },
        env: { ES_API_URL: `${s.url}/api`, ES_API_KEY: ADMIN_KEY, ...env },
        tmpdir: tmp.dir,
        ...extra,
      },
    };
  }

  it('waits with a spinner and the elapsed time, and colours the final status', async () => {
    const { io: t, cap } = io({ out: true, err: true });
    const code = await main(['create', '/vm/web01/snapshot/tty1', '-disk_id', '1'], t);
    expect(code).toBe(0);
    expect(cap.stderr.startsWith('\r\x1b[2KWaiting for pending task 1e1d1-')).toBe(true);
    expect(cap.stderr).toMatch(/\r\x1b\[2KWaiting for pending task \S+: done after \d+\.\ds\n$/);
    expect(cap.stderr).toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] \x1b\[2m\d+\.\ds\x1b\[22m/);
    expect(cap.stderr).not.toContain('\b');
    expect(cap.stdout).toContain('    "status": \x1b[1;32m200\x1b[0m,\n');
    const plain = JSON.parse(cap.stdout.replace(ANSI, ''));
    expect(plain).toMatchObject({ method: 'POST', status: 200, text: { status: 'SUCCESS', result: { returncode: 0 } } });
  });

  it('colours a 4xx status and the hint', async () => {
    const { io: t, cap } = io({ out: true, err: true }, { ES_API_KEY: '' });
    expect(await main(['get', '/vm'], t)).toBe(1);
    expect(cap.stdout).toContain('"status": \x1b[1;33m403\x1b[0m,');
    expect(cap.stderr).toBe('\x1b[33mno credentials: run es login or set ES_API_KEY\x1b[0m\n');
  });

  it('NO_COLOR keeps the spinner and drops the colour', async () => {
    const { io: t, cap } = io({ out: true, err: true }, { NO_COLOR: '1' });
    expect(await main(['create', '/vm/web01/snapshot/tty2', '-disk_id', '1'], t)).toBe(0);
    expect(cap.stdout).not.toMatch(ANSI);
    expect(cap.stderr).toContain('\r\x1b[2KWaiting for pending task ');
    expect(cap.stderr).not.toContain('\x1b[2m');
  });

  it('not a terminal (or TERM=dumb): exactly the compatible output', async () => {
    for (const [tty, env] of [
      [{ out: false, err: false }, {}],
      [{ out: true, err: true }, { TERM: 'dumb' }],
    ] as const) {
      const { io: t, cap } = io(tty, env);
      const name = `plain${Object.keys(env).length}`;
      expect(await main(['create', `/vm/web01/snapshot/${name}`, '-disk_id', '1'], t)).toBe(0);
      expect(cap.stderr).toMatch(/^Waiting for pending task \S+ \.*\x08\n$/);
      expect(cap.stdout).not.toMatch(ANSI);
      const o = JSON.parse(cap.stdout);
      expect(cap.stdout).toBe(`${JSON.stringify(o, null, 4)}\n`);
      expect(o).toMatchObject({ method: 'POST', url: `${s.url}/api/vm/web01/snapshot/${name}/`, status: 200 });
    }
  });

  it('an interrupt ends the spinner line and returns 5', async () => {
    const fake = await fakeServer((_req, res) => {
      res.writeHead(201, { es_stream: 'True', es_task_id: 't-tty' });
      const timer = setInterval(() => res.write(' '), 20);
      res.on('close', () => clearInterval(timer));
    });
    try {
      const ctrl = new AbortController();
      const { io: t, cap } = io({ out: false, err: true }, { ES_API_URL: `${fake.url}/api` }, { interrupt: ctrl.signal });
      const running = main(['create', '/x'], t);
      await until(() => cap.stderr.includes('Waiting for pending task t-tty'));
      ctrl.abort();
      expect(await running).toBe(5);
      expect(cap.stderr).toMatch(/\r\x1b\[2KWaiting for pending task t-tty: interrupted after \d+\.\ds\n\x1b\[31mERROR: Request interrupted by user\. Please check your current task list\.\x1b\[0m\n/);
      expect(JSON.parse(cap.stdout)).toMatchObject({ status: 201, text: '' });
    } finally {
      await fake.close();
    }
  });
});
