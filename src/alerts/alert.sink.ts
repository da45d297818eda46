/**
 * Where alerts go: always to the log (ERROR or WARNING), and, when `ESNAP_ALERT_WEBHOOK` is set,
 * as a JSON POST to that URL. Delivery runs in the background with retries and exponential
 * backoff, so a slow or dead receiver never holds up a task completion or a scheduler tick; a
 * receiver that answers 2xx has the alert, one that keeps failing gets it logged as undelivered.
 *
 * Body of a POST:
 *   {"source":"esnap","type":"snapshot_create_failed","priority":"ERROR","message":"Automatic snapshot …",
 *    "hostname":"web01","disk_id":1,"define":"daily","snapnames":["daily-20260329_010000"],"time":"2026-03-29T01:00:05Z"}
 */
import type { Clock, Logger } from '../app-context.js';
import { formatDanubeTime } from '../domain/time.js';
import { sleeperOf } from '../lib/clock.js';
import type { Alert } from './alert.messages.js';
import { retry } from '../domain/backoff.js';

export interface AlertObserver {
  alertRaised(alert: Alert): void;
  webhookFailed(alert: Alert): void;
}

export interface AlertSinkOptions {
  readonly clock: Clock;
  readonly log: Logger;
  /** URL of the webhook; null or absent: log only. */
  readonly webhook?: string | null;
  /** Delivery attempts per alert (default 5). */
  readonly attempts?: number;
  /** First backoff; doubled after each failed attempt (default 1 s). */
  readonly backoffMs?: number;
  /** Per-attempt timeout (default 10 s). */
  readonly timeoutMs?: number;
  /** How long `stop` lets deliveries in flight finish before abandoning them (default 5 s). */
  readonly stopGraceMs?: number;
  readonly observer?: AlertObserver;
}

/** Statuses worth another attempt; any other 4xx means the receiver refuses this alert. */
function retryable(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/** A receiver's answer other than 2xx. */
class RefusedError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

export class AlertSink {
  readonly #o: Required<Omit<AlertSinkOptions, 'observer' | 'webhook'>> & { webhook: string | null; observer: AlertObserver | null };
  readonly #inFlight = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  #stopped = false;

  constructor(opts: AlertSinkOptions) {
    this.#o = {
      clock: opts.clock,
      log: opts.log,
      webhook: opts.webhook ?? null,
      attempts: Math.max(1, opts.attempts ?? 5),
      backoffMs: opts.backoffMs ?? 1000,
      timeoutMs: opts.timeoutMs ?? 10_000,
      stopGraceMs: opts.stopGraceMs ?? 5000,
      observer: opts.observer ?? null,
    };
  }

  /** Raises an alert: logged at once, posted in the background. Never throws. */
  send(alert: Alert): void {
    const fields = { alert: alert.type, hostname: alert.hostname, disk_id: alert.disk_id, define: alert.define, snapnames: alert.snapnames };
    if (alert.priority === 'WARNING') this.#o.log.warn(fields, alert.message);
    else this.#o.log.error(fields, alert.message);
    this.#o.observer?.alertRaised(alert);
    if (this.#o.webhook === null || this.#stopped) return;
    const body = JSON.stringify({ source: 'esnap', ...alert, time: formatDanubeTime(this.#o.clock.now()) });
    const p: Promise<void> = this.#deliver(this.#o.webhook, alert, body).finally(() => this.#inFlight.delete(p));
    this.#inFlight.add(p);
  }

  async #deliver(url: string, alert: Alert, body: string): Promise<void> {
    const sleeper = sleeperOf(this.#o.clock);
    try {
      await retry(
        async () => {
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body,
            signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#o.timeoutMs)]),
          });
          await res.arrayBuffer().catch(() => undefined);
          if (!res.ok) throw new RefusedError(res.status);
        },
        {
          attempts: this.#o.attempts,
          backoff: { firstMs: this.#o.backoffMs },
          retryIf: (err) => !(err instanceof RefusedError) || retryable(err.status),
          signal: this.#abort.signal,
          sleep: (ms, signal) => sleeper.sleep(ms, signal),
        },
      );
    } catch (err) {
      this.#o.observer?.webhookFailed(alert);
      const error = err instanceof Error ? err.message : String(err);
      this.#o.log.error({ alert: alert.type, webhook: url.replace(/\/\/[^@/]*@/, '//***@'), error }, `alert not delivered: ${alert.message}`);
    }
  }

  /** Resolves when every delivery started so far has ended (delivered or given up). */
  async flush(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Stops posting: deliveries in flight get `stopGraceMs`, then are abandoned (and logged). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#inFlight.size === 0) return;
    const grace = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, this.#o.stopGraceMs);
      t.unref();
    });
    await Promise.race([this.flush(), grace]);
    this.#abort.abort();
    await this.flush();
  }
}
