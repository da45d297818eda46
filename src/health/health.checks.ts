/**
 * Readiness checks shared by the API server (`/readyz`, src/http/health.routes.ts) and the agent
 * (src/agent/agent-health.ts): each check is a named probe that resolves with details or throws;
 * the answer is 200 `{"status":"ready","checks":{…}}` or 503 `{"status":"not ready","failing":[…],
 * "checks":{…}}`.
 *
 * - Checks run in the order given; `failing` lists the ones not ok in that order, so the cause
 *   comes first. A check that `needs` another is not run when that one failed (a migration check
 *   cannot succeed without a database) and says so in its error.
 * - Every probe has a deadline: a database that does not answer (a dropped network, a full pool)
 *   fails the check instead of hanging the monitor's request.
 * - Error texts go to unauthenticated callers: connection URLs lose their credentials and texts are
 *   cut short. Driver messages (`connect ECONNREFUSED 127.0.0.1:5432`) are kept: they name the
 *   part that is broken, which is the point of the endpoint.
 */

export const CHECK_TIMEOUT_MS = 2000;
const MAX_ERROR_CHARS = 300;

export type CheckDetails = Record<string, string | number | boolean | null>;

export interface HealthCheck {
  readonly name: string;
  /** Resolves with details to show when ok; throws (with a message fit for the public) when not. */
  readonly probe: () => Promise<CheckDetails | void>;
  /** Name of an earlier check this one cannot run without. */
  readonly needs?: string;
  readonly timeoutMs?: number;
}

export type CheckResult = { ok: true } & CheckDetails | { ok: false; error: string };

export interface Readiness {
  readonly status: 200 | 503;
  readonly body:
    | { status: 'ready'; checks: Record<string, CheckResult> }
    | { status: 'not ready'; failing: string[]; checks: Record<string, CheckResult> };
}

/** The `/healthz` answer: the process is up and serving. */
export const HEALTHY_BODY = JSON.stringify({ status: 'ok' });

/** Removes credentials from URLs and `password=` pairs, and keeps the text short. */
export function publicError(err: unknown): string {
  const raw = err instanceof Error ? err.message || err.name : String(err);
  const text = raw
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1***@')
    .replace(/(password\s*=\s*)\S+/gi, '$1***')
    .replace(/\s+/g, ' ')
    .trim();
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS - 1)}…` : text || 'failed';
}

async function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs the checks in order and builds the answer.
 *
 * @example
 *   const r = await runChecks([{ name: 'database', probe: () => ping(db) }]);
 *   reply.code(r.status).send(r.body);
 */
export async function runChecks(checks: readonly HealthCheck[]): Promise<Readiness> {
  const results: Record<string, CheckResult> = {};
  const failing: string[] = [];
  for (const check of checks) {
    if (check.needs !== undefined && failing.includes(check.needs)) {
      results[check.name] = { ok: false, error: `not checked: ${check.needs} failed` };
      failing.push(check.name);
      continue;
    }
    try {
      const details = await withDeadline(Promise.resolve().then(check.probe), check.timeoutMs ?? CHECK_TIMEOUT_MS);
      results[check.name] = { ok: true, ...(details ?? {}) };
    } catch (err) {
      results[check.name] = { ok: false, error: publicError(err) };
      failing.push(check.name);
    }
  }
  return failing.length === 0
    ? { status: 200, body: { status: 'ready', checks: results } }
    : { status: 503, body: { status: 'not ready', failing, checks: results } };
}
