/**
 * esnap's `es`: Danube Cloud's es client (spec 12), the same command line, output and exit codes,
 * with TLS verified by default, a spinner and colour on a terminal, and hints on stderr after the
 * answer. Everything the process touches comes through `io`, so tests can run it in-process.
 *
 *   process.exitCode = await main(process.argv.slice(2));
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { IncomingMessage } from 'node:http';
import { parseCommandLine, type FileReader, type Invocation } from './args.js';
import { composeCall, headerValue, readAnswer } from './call.js';
import { deleteToken, loadConfig, writeToken, type EsConfig, type Env } from './config.js';
import { ES_VERSION, HELP, USAGE } from './help.js';
import { hintsFor, usageHint, type HintContext } from './hints.js';
import { renderOutput } from './output.js';
import { dotsProgress, spinnerProgress, type Progress } from './progress.js';
import type { PyValue } from './pyfmt.js';
import { displayHeaders, Exchange, InterruptedError, type HttpSpec } from './request.js';

export interface CliStream {
  write(s: string): unknown;
  readonly isTTY?: boolean;
}

export interface CliIo {
  readonly stdout: CliStream;
  readonly stderr: CliStream;
  readonly env: Env;
  /** Folder of the token store (`os.tmpdir()`, which follows TMPDIR). */
  readonly tmpdir: string;
  /** Acts like Ctrl-C when aborted; without it, main listens to SIGINT itself. */
  readonly interrupt?: AbortSignal;
  readonly now?: () => number;
  readonly readFile?: FileReader;
}

export const INTERRUPTED = 'ERROR: Request interrupted by user. Please check your current task list.';
const LOGIN_PROBLEM = '\nERROR: Login problem';

function processIo(): CliIo {
  // `es get /vm | head -1`: a reader that left is not an error worth a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
    });
  }
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, tmpdir: tmpdir() };
}

function esnapVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'esnap' && pkg.version) return pkg.version;
    } catch {
      // try the next place: the layout differs between src/ and dist/src/
    }
  }
  return 'unknown';
}

export function exitCodeFor(status: number | string): number {
  if (typeof status !== 'number') return 2; // `201?`: Danube (Python 2) ended up here too
  if (status < 400) return 0;
  if (status < 500) return 1;
  return 2;
}

interface Terminal {
  readonly colourOut: boolean;
  readonly colourErr: boolean;
  readonly spinner: boolean;
}

function terminal(io: CliIo): Terminal {
  const dumb = io.env['TERM'] === 'dumb';
  const noColor = io.env['NO_COLOR'] !== undefined && io.env['NO_COLOR'] !== '';
  return {
    colourOut: Boolean(io.stdout.isTTY) && !dumb && !noColor,
    colourErr: Boolean(io.stderr.isTTY) && !dumb && !noColor,
    spinner: Boolean(io.stderr.isTTY) && !dumb,
  };
}

export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const term = terminal(io);
  const err = (s: string): void => void io.stderr.write(s);
  const errLine = (s: string): void => err(term.colourErr ? `\x1b[31m${s}\x1b[0m\n` : `${s}\n`);
  const hint = (s: string): void => err(term.colourErr ? `\x1b[33m${s}\x1b[0m\n` : `${s}\n`);

  const parsed = parseCommandLine(argv, io.readFile);
  switch (parsed.kind) {
    case 'help':
      io.stdout.write(HELP);
      return 0;
    case 'version':
      io.stdout.write(`es ${ES_VERSION} (esnap ${esnapVersion()})\n`);
      return 0;
    case 'error':
      if (parsed.code === 11) err(USAGE);
      else errLine(parsed.message);
      usageHint(parsed.code, parsed.detail).forEach(hint);
      return parsed.code;
    case 'run':
      break;
  }
  const inv = parsed.invocation;
  inv.notes.forEach((n) => err(`${n}\n`));
  const loaded = loadConfig(io.env, io.tmpdir);
  if (!loaded.ok) {
    errLine(`ERROR: ${loaded.message}`);
    return 3;
  }

  const ctrl = new AbortController();
  const onSigint = (): void => ctrl.abort();
  if (io.interrupt) io.interrupt.addEventListener('abort', onSigint, { once: true });
  else process.on('SIGINT', onSigint);
  try {
    return await run(inv, loaded.config, io, term, ctrl.signal, { errLine, hint });
  } finally {
    if (io.interrupt) io.interrupt.removeEventListener('abort', onSigint);
    else process.off('SIGINT', onSigint);
  }
}

interface Say {
  errLine(s: string): void;
  hint(s: string): void;
}

async function run(inv: Invocation, cfg: EsConfig, io: CliIo, term: Terminal, signal: AbortSignal, say: Say): Promise<number> {
  const call = composeCall(inv, cfg, (line) => void io.stderr.write(`${line}\n`));
  const hintBase: HintContext = {
    action: inv.action,
    apiUrl: cfg.apiUrl,
    sentApiKey: call.sentApiKey,
    sentToken: call.sentToken,
    ...(cfg.timeoutS !== undefined ? { timeoutS: cfg.timeoutS } : {}),
  };
  const loginFailed = (): void => {
    say.errLine(LOGIN_PROBLEM);
    hintsFor({ ...hintBase, loginFailed: true, hasUsername: inv.params.has('username') }).forEach(say.hint);
  };

  let ca: string | undefined;
  if (cfg.caFile !== undefined) {
    try {
      ca = readFileSync(cfg.caFile, 'utf8');
    } catch (e) {
      say.errLine(`ERROR: cannot read ES_CA_FILE: ${(e as Error).message}`);
      return 3;
    }
  }
  const spec: HttpSpec = {
    method: inv.method,
    url: call.url,
    headers: call.headers,
    ...(call.body !== undefined ? { body: call.body } : {}),
    ...(cfg.timeoutS !== undefined ? { timeoutS: cfg.timeoutS } : {}),
    sslVerify: cfg.sslVerify,
    ...(ca !== undefined ? { ca } : {}),
  };

  let ex: Exchange;
  let res: IncomingMessage;
  try {
    ex = new Exchange(spec, signal);
    res = await ex.response;
  } catch (e) {
    // No answer at all: nothing on stdout (Danube printed only when it had a response).
    const interrupted = e instanceof InterruptedError;
    say.errLine(interrupted ? INTERRUPTED : `ERROR: ${(e as Error).message}`);
    hintsFor({ ...hintBase, error: e as Error, interrupted }).forEach(say.hint);
    if (inv.action === 'login') {
      loginFailed();
      return 4;
    }
    return interrupted ? 5 : 3;
  }

  const progress: Progress = term.spinner
    ? spinnerProgress((s) => void io.stderr.write(s), { now: io.now ?? Date.now, colour: term.colourErr })
    : dotsProgress((s) => void io.stderr.write(s));
  const { status, rawText, failure } = await readAnswer(ex, res, progress);
  const interrupted = failure instanceof InterruptedError;
  let ec = failure ? (interrupted ? 5 : 3) : exitCodeFor(status);
  let em: string | null = failure ? (interrupted ? INTERRUPTED : `ERROR: ${failure.message}`) : null;
  let text: PyValue = rawText;
  if (!failure) {
    try {
      text = JSON.parse(rawText) as PyValue;
    } catch {
      // not JSON: the raw text is shown
    }
  }

  let loginProblem = false;
  if (inv.action === 'login') {
    const token = text !== null && typeof text === 'object' && !Array.isArray(text) && !(text instanceof Map) ? text['token'] : undefined;
    if (typeof token === 'string') {
      try {
        writeToken(cfg.tokenStore, token);
      } catch (e) {
        ec = 4;
        em = `ERROR: cannot store the login token in ${cfg.tokenStore}: ${(e as Error).message}`;
      }
    } else {
      ec = 4;
      loginProblem = true;
    }
  }
  if (inv.action === 'logout' && res.statusCode === 200) deleteToken(cfg.tokenStore);

  const debug = inv.debug ? { command: inv.command, headers: displayHeaders(res.rawHeaders), requestHeaders: call.headers } : undefined;
  io.stdout.write(renderOutput(inv.format, { method: inv.method, url: call.url, status, text, ...(debug ? { debug } : {}) }, term.colourOut));
  if (em) say.errLine(em);
  const taskId = headerValue(res, 'es_task_id');
  const allow = headerValue(res, 'allow');
  hintsFor({
    ...hintBase,
    status,
    text,
    ...(taskId ? { taskId } : {}),
    ...(allow ? { allow } : {}),
    ...(failure ? { error: failure, interrupted } : {}),
  }).forEach(say.hint);
  if (loginProblem) loginFailed();
  return ec;
}
