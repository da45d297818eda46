/**
 * esnap's logger: pino (Fastify's own logger, so one logger for the app and the HTTP layer) with
 * levels (ESNAP_LOG_LEVEL), one JSON object per line on standard output, or a readable line when
 * standard output is a terminal. pino keeps `Error.cause` chains (the `err` serializer) and never
 * throws on a circular object, which the hand-written logger it replaces did.
 *
 * Example:
 *   const log = createLogger({ level: 'debug' });
 *   log.warn({ err, taskId }, 'agent operation failed');
 *   const runner = new NodeCommandRunner({ onRun: logCommands(log) });
 */
import { pino, stdSerializers, stdTimeFunctions, type DestinationStream, type Logger as PinoLogger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Where lines go; standard output by default (synchronously: `process.exit` must not lose the last lines). */
  readonly stream?: DestinationStream;
  /** The readable one-line form; by default when standard output is a terminal. */
  readonly pretty?: boolean;
}

export function createLogger(opts: LoggerOptions): PinoLogger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  const out = opts.stream ?? pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: opts.level,
      // journald and the agent's unit already say which host and process; the node is in the records that matter.
      base: null,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // errWithCause keeps the whole cause chain as nested objects (the default flattens it into the message).
      serializers: { err: stdSerializers.errWithCause },
    },
    pretty ? readable(out) : out,
  );
}

const LEVEL_WIDTH = 5;

/**
 * One pino JSON line as `HH:MM:SS.mmm LEVEL message key=value …`, with an error's stack (and its
 * causes') on the lines below. A line that is not JSON passes through unchanged.
 */
export function prettyLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const { time, level, msg, err, ...rest } = rec;
  const clock = typeof time === 'string' ? time.slice(11, 23) : '';
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`);
  const head = [clock, String(level ?? '').toUpperCase().padEnd(LEVEL_WIDTH), msg ?? '', ...fields].filter((p) => p !== '').join(' ');
  return `${head}${err === undefined ? '' : `\n${errorText(err)}`}\n`;
}

/** A serialized error (errWithCause's shape) and its causes, stacks indented. */
function errorText(err: unknown, depth = 0): string {
  if (typeof err !== 'object' || err === null) return `    ${String(err)}`;
  const e = err as { message?: unknown; stack?: unknown; cause?: unknown };
  const text = typeof e.stack === 'string' ? e.stack : String(e.message ?? JSON.stringify(err));
  const own = text
    .split('\n')
    .map((l) => `    ${'  '.repeat(depth)}${depth > 0 && l === text.split('\n')[0] ? 'caused by: ' : ''}${l.trim()}`)
    .join('\n');
  return e.cause === undefined ? own : `${own}\n${errorText(e.cause, depth + 1)}`;
}

function readable(out: DestinationStream): DestinationStream {
  return { write: (line: string) => out.write(prettyLine(line)) };
}

export { logCommands } from './storage/node-runner.js';
