/**
 * esnap's logger (src/log.ts): levels, error causes, circular objects, the readable form, the
 * command runner's debug lines (a real command), and ESNAP_LOG_LEVEL's validation.
 */
import { describe, expect, it } from 'vitest';
import { createLogger, logCommands, prettyLine, type LogLevel } from '../src/log.js';
import { NodeCommandRunner } from '../src/storage/node-runner.js';
import { ConfigError, loadConfig } from '../src/config.js';

/** A logger writing into an array of parsed JSON records (or raw lines with `pretty`). */
function capture(level: LogLevel, pretty = false) {
  const raw: string[] = [];
  const log = createLogger({ level, pretty, stream: { write: (s: string) => void raw.push(s) } });
  const records = () => raw.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, raw, records };
}

describe('logger', () => {
  it('honours the level: below it nothing is written, at and above it one JSON line each', () => {
    const c = capture('warn');
    c.log.debug({ a: 1 }, 'd');
    c.log.info({ a: 2 }, 'i');
    c.log.warn({ a: 3 }, 'w');
    c.log.error({ a: 4 }, 'e');
    expect(c.records().map((r) => [r['level'], r['msg'], r['a']])).toEqual([
      ['warn', 'w', 3],
      ['error', 'e', 4],
    ]);
    expect(c.raw.every((l) => l.endsWith('\n') && l.indexOf('\n') === l.length - 1)).toBe(true);
    expect(typeof c.records()[0]!['time']).toBe('string');

    const d = capture('debug');
    d.log.debug({ a: 1 }, 'd');
    expect(d.records().map((r) => r['level'])).toEqual(['debug']);
  });

  it('keeps Error.cause, as an object and as the first argument', () => {
    const c = capture('info');
    const inner = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
    const err = new Error('cannot create disk web01/disk0', { cause: inner });
    c.log.error({ err, taskId: 't1' }, 'agent operation failed');
    c.log.error(err, 'bare');
    for (const r of c.records()) {
      const e = r['err'] as { message: string; stack: string; cause: { message: string; code: string } };
      expect(e.message).toBe('cannot create disk web01/disk0');
      expect(e.stack).toContain('cannot create disk web01/disk0');
      expect(e.cause).toMatchObject({ message: 'ENOENT: no such file', code: 'ENOENT' });
    }
  });

  it('writes a circular object without throwing', () => {
    const c = capture('info');
    const o: Record<string, unknown> = { name: 'loop' };
    o['self'] = o;
    expect(() => c.log.info({ o }, 'circular')).not.toThrow();
    expect(c.records()[0]).toMatchObject({ msg: 'circular', o: { name: 'loop', self: '[Circular]' } });
  });

  it('the readable form: one line per record, the error and its cause below it', () => {
    const c = capture('info', true);
    c.log.info({ taskId: 't1', outcome: 'SUCCESS', argv: ['a b', 'c'] }, 'task ended');
    expect(c.raw[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  task ended taskId=t1 outcome=SUCCESS argv=\["a b","c"\]\n$/);
    c.log.warn({ err: new Error('outer', { cause: new Error('inner') }) }, 'failed');
    const lines = c.raw[1]!.trimEnd().split('\n');
    expect(lines[0]).toMatch(/ WARN  failed$/);
    expect(lines[1]).toBe('    Error: outer');
    expect(lines.some((l) => l.trim() === 'caused by: Error: inner')).toBe(true);
    expect(prettyLine('not json')).toBe('not json\n');
  });

  it('logs each command of the runner at debug level with argv, exit code and duration', async () => {
    const c = capture('debug');
    const runner = new NodeCommandRunner({ onRun: logCommands(c.log) });
    await runner.run(['sleep', '0.2']);
    await runner.run(['sh', '-c', 'exit 3']);
    await expect(runner.run(['esnap-no-such-command'])).rejects.toThrow(/Cannot run/);
    const [sleep, exit3, missing] = c.records();
    expect(sleep).toMatchObject({ level: 'debug', msg: 'command', argv: ['sleep', '0.2'], code: 0 });
    // A lower bound only: the command itself sleeps 200 ms.
    expect(sleep!['durationMs']).toBeGreaterThanOrEqual(190);
    expect(exit3).toMatchObject({ level: 'debug', msg: 'command', argv: ['sh', '-c', 'exit 3'], code: 3 });
    expect(typeof exit3!['durationMs']).toBe('number');
    expect(missing).toMatchObject({ level: 'debug', msg: 'command failed', argv: ['esnap-no-such-command'], err: { cause: { code: 'ENOENT' } } });

    const quiet = capture('info');
    await new NodeCommandRunner({ onRun: logCommands(quiet.log) }).run(['true']);
    expect(quiet.raw).toEqual([]);
  });
});

describe('ESNAP_LOG_LEVEL', () => {
  it('defaults to info, takes a level name in any case, and refuses anything else', () => {
    expect(loadConfig({}).logLevel).toBe('info');
    expect(loadConfig({ ESNAP_LOG_LEVEL: 'DEBUG' }).logLevel).toBe('debug');
    expect(() => loadConfig({ ESNAP_LOG_LEVEL: 'verbose' })).toThrow(ConfigError);
    expect(() => loadConfig({ ESNAP_LOG_LEVEL: 'verbose' })).toThrow(
      'ESNAP_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent (got "verbose")',
    );
  });
});
