/**
 * Hints for a new user: one line each, on stderr, after Danube's output and messages, so scripts
 * that read stdout and the exit code see nothing new. Each says what to do next.
 */
import type { PyValue } from './pyfmt.js';
import { TimeoutError } from './request.js';
import { TABLE_FORMATS } from './table.js';

export interface HintContext {
  readonly action: string;
  readonly apiUrl: string;
  readonly status?: number | string;
  readonly text?: PyValue;
  readonly sentApiKey: boolean;
  readonly sentToken: boolean;
  readonly allow?: string;
  readonly taskId?: string;
  readonly timeoutS?: number;
  /** The error of a failed request (exit 3 or 5). */
  readonly error?: Error;
  readonly interrupted?: boolean;
  readonly loginFailed?: boolean;
  readonly hasUsername?: boolean;
}

const detailOf = (text: PyValue | undefined): string | undefined =>
  text !== null && typeof text === 'object' && !Array.isArray(text) && !(text instanceof Map) && typeof text['detail'] === 'string'
    ? text['detail']
    : undefined;

const envelopeStatus = (text: PyValue | undefined): string | undefined =>
  text !== null && typeof text === 'object' && !Array.isArray(text) && !(text instanceof Map) && typeof text['status'] === 'string'
    ? text['status']
    : undefined;

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const ACTION_OF: Readonly<Record<string, string>> = { GET: 'get', POST: 'create', PUT: 'set', DELETE: 'delete', OPTIONS: 'help' };

function statusCommand(taskId: string | undefined): string {
  return taskId ? `es get /task/${taskId}/status` : 'es get /task';
}

export function hintsFor(c: HintContext): string[] {
  const out: string[] = [];
  if (c.error) {
    const code = (c.error as NodeJS.ErrnoException).code ?? '';
    if (c.interrupted) {
      if (c.taskId) out.push(`the task goes on without es: ${statusCommand(c.taskId)} shows how it ends`);
    } else if (code === 'ECONNREFUSED') {
      out.push(`nothing answers at ${c.apiUrl}: is esnap running (npm start)? ES_API_URL points es elsewhere`);
    } else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      out.push(`the host of ES_API_URL (${c.apiUrl}) is unknown`);
    } else if (TLS_CODES.has(code)) {
      out.push("the server's TLS certificate is not trusted: set ES_CA_FILE to its CA's PEM file, or ES_SSL_VERIFY=0 to skip the check");
    } else if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'HPE_INVALID_CONSTANT') {
      out.push(`check the scheme of ES_API_URL (${c.apiUrl}): http or https`);
    } else if (code === 'ECONNRESET' && !c.taskId && c.apiUrl.startsWith('http:')) {
      // An HTTPS server (esnap with ESNAP_TLS_CERT) drops a plain-text request without an answer.
      out.push(`the server closed the connection: if it speaks HTTPS, ES_API_URL must start with https:// (it is ${c.apiUrl})`);
    } else if (c.error instanceof TimeoutError) {
      out.push(`no answer for ES_TIMEOUT=${c.timeoutS} seconds${c.taskId ? `; ${statusCommand(c.taskId)} shows the task` : ''}`);
    } else if (c.taskId) {
      out.push(`the connection broke while waiting: ${statusCommand(c.taskId)} shows how the task ends`);
    }
    return out;
  }
  const detail = detailOf(c.text);
  if (c.status === 403 && !c.sentApiKey && !c.sentToken && c.action !== 'login') {
    out.push('no credentials: run es login or set ES_API_KEY');
  } else if (c.status === 403 && !c.sentApiKey && c.sentToken && (detail === 'Authentication credentials were not provided.' || detail === 'Invalid token.')) {
    out.push('the stored login has expired or ended: run es login again, or set ES_API_KEY');
  } else if (c.status === 403 && c.sentApiKey && detail === 'Invalid API key') {
    out.push('the API key was refused: check ES_API_KEY (or -api-key)');
  } else if (c.status === 405 && c.allow) {
    const actions = c.allow
      .split(',')
      .map((m) => ACTION_OF[m.trim().toUpperCase()])
      .filter((a): a is string => a !== undefined);
    out.push(`this resource takes: ${[...new Set(actions)].join(', ')}`);
  } else if (typeof c.status === 'string') {
    out.push(`the wait ended before the task did: ${statusCommand(c.taskId)} shows how it ends`);
  } else if (c.status === 201 && c.taskId && envelopeStatus(c.text) !== undefined && ['PENDING', 'STARTED'].includes(envelopeStatus(c.text)!)) {
    // A server that stopped waiting (esnap's ESNAP_STREAM_TIMEOUT_S) or did not stream at all.
    out.push(`the task is still running: ${statusCommand(c.taskId)} shows how it ends`);
  }
  if (c.loginFailed && !c.hasUsername) out.push('log in with: es login -username <name> -password <password>');
  return out;
}

export function usageHint(code: 11 | 12 | 13, detail: string | undefined): string[] {
  if (code === 11) return detail !== undefined ? [`unknown action "${detail}": es --help shows the actions and examples`] : ['es --help shows examples'];
  if (code === 12) return ['name the resource after the action, e.g. es get /vm'];
  return [`output formats: --json, --csv, --tabulate, --tabulate-<fmt> (${TABLE_FORMATS.join(', ')})`];
}
