import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeCommandRunner, defaultRunner, type RunInfo } from '../../src/storage/node-runner.js';

const runner = new NodeCommandRunner();

describe('NodeCommandRunner (real processes)', () => {
  it('returns exit codes without throwing', async () => {
    expect((await runner.run(['true'])).code).toBe(0);
    expect((await runner.run(['false'])).code).toBe(1);
    expect((await runner.run(['sh', '-c', 'exit 42'])).code).toBe(42);
  });

  it('captures stdout and stderr separately, as UTF-8', async () => {
    const r = await runner.run(['sh', '-c', 'printf "out ünïcode"; printf err >&2']);
    expect(r).toMatchObject({ code: 0, stdout: 'out ünïcode', stderr: 'err' });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('passes arguments literally, never through a shell', async () => {
    for (const arg of ['$(echo hi)', 'a; b', '`id`', '* ?', "it's \"quoted\"", '>out', '$HOME', 'a\nb', '-n']) {
      const r = await runner.run(['printf', '%s', arg]);
      expect(r.stdout).toBe(arg);
    }
  });

  it('writes input to stdin', async () => {
    expect((await runner.run(['cat'], { input: 'hello\nworld' })).stdout).toBe('hello\nworld');
    expect((await runner.run(['wc', '-c'], { input: Buffer.alloc(100_000, 1) })).stdout.trim()).toBe('100000');
  });

  it('gives a command without input an empty stdin instead of hanging', async () => {
    expect((await runner.run(['cat'], { timeoutMs: 5000 })).stdout).toBe('');
  });

  it('survives a command that exits without reading its input', async () => {
    const r = await runner.run(['true'], { input: Buffer.alloc(4 * 1024 * 1024) });
    expect(r.code).toBe(0);
  });

  it('adds env variables to the inherited environment', async () => {
    const r = await runner.run(['sh', '-c', 'printf "%s|%s" "$ESNAP_T" "${PATH:+has-path}"'], { env: { ESNAP_T: 'x y' } });
    expect(r.stdout).toBe('x y|has-path');
  });

  it('kills a command at its timeout and rejects naming it', async () => {
    const started = Date.now();
    await expect(runner.run(['sleep', '30'], { timeoutMs: 200 })).rejects.toThrow(/timed out after 200 ms.*"sleep" "30"/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('kills on timeout even when a child of the command keeps the pipes open', async () => {
    const started = Date.now();
    // The shell is killed; its `sleep` inherits stdout and would hold 'close' back for 4 s.
    await expect(runner.run(['sh', '-c', 'sleep 4; true'], { timeoutMs: 200 })).rejects.toThrow(/timed out/);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('kills and rejects on abort, and refuses an already aborted signal', async () => {
    const ac = new AbortController();
    const run = runner.run(['sleep', '30'], { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('task cancelled')), 100);
    const err: unknown = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).toBe('AbortError');
    expect(((err as Error).cause as Error).message).toBe('task cancelled');
    await expect(runner.run(['true'], { signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);
  });

  it('rejects when the program does not exist, keeping the errno as cause', async () => {
    const err: unknown = await runner.run(['esnap-no-such-program', 'x']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/esnap-no-such-program/);
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('refuses an empty argv', async () => {
    await expect(runner.run([])).rejects.toThrow(TypeError);
  });

  it('caps captured output but still lets the command finish', async () => {
    const small = new NodeCommandRunner({ maxOutputBytes: 1000 });
    const r = await small.run(['head', '-c', '100000', '/dev/zero']);
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(1000);
  });

  it('reports a killed-by-signal exit as 128 + signal number', async () => {
    expect((await runner.run(['sh', '-c', 'kill -TERM $$'])).code).toBe(128 + 15);
  });

  it('calls onRun for every run, including failures, and survives a throwing hook', async () => {
    const seen: RunInfo[] = [];
    const r = new NodeCommandRunner({ onRun: (i) => seen.push(i) });
    await r.run(['sh', '-c', 'exit 3']);
    await r.run(['esnap-no-such-program']).catch(() => undefined);
    await r.run(['sleep', '5'], { timeoutMs: 50 }).catch(() => undefined);
    expect(seen.map((i) => [i.argv[0], i.code, i.error !== undefined])).toEqual([
      ['sh', 3, false],
      ['esnap-no-such-program', null, true],
      ['sleep', null, true],
    ]);
    expect(seen.every((i) => i.durationMs >= 0)).toBe(true);

    const throwing = new NodeCommandRunner({
      onRun: () => {
        throw new Error('logger down');
      },
    });
    expect((await throwing.run(['true'])).code).toBe(0);
  });

  it('pipe: tells when the producer has exited 0 while the consumer still runs, and never for a failed producer', async () => {
    const runner = new NodeCommandRunner();
    const dir = await mkdtemp(join(tmpdir(), 'esnap-pipe-'));
    const go = join(dir, 'go');
    try {
      // The consumer reads the whole stream, then waits until the callback has run (a receive that
      // finishes its work after the stream): called only at the end, the pipe would never finish.
      const consumer = [
        'node',
        '-e',
        `const fs=require('fs');let n=0;process.stdin.on('data',(c)=>{n+=c.length});process.stdin.on('end',()=>{const t=setInterval(()=>{if(fs.existsSync(${JSON.stringify(go)})){clearInterval(t);process.stdout.write(String(n))}},20)})`,
      ];
      const r = await runner.pipe(['head', '-c', '100000', '/dev/zero'], consumer, { onProducerDone: () => writeFileSync(go, '') });
      expect(r.consumer.stdout).toBe('100000');

      const failed: string[] = [];
      const f = await runner.pipe(['sh', '-c', 'exit 3'], ['cat'], { onProducerDone: () => failed.push('called') });
      expect(f.producer.code).toBe(3);
      expect(failed).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('exports a ready default runner', async () => {
    expect((await defaultRunner.run(['printf', 'ok'])).stdout).toBe('ok');
  });
});
