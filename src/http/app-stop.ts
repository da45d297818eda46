/**
 * The HTTP side of a server stop, ending promptly whatever clients hold open:
 *
 * - `app.close()` stops listening; a request arriving after it (on a keep-alive connection) gets
 *   Fastify's 503 with `Connection: close` (`return503OnClosing`, on by default).
 * - Open ES-STREAM responses end at once with the pending `201` line (stream.ts `endStreams`);
 *   otherwise close() would wait for them for up to ESNAP_STREAM_TIMEOUT_S.
 * - Node's `server.close()` drops only the keep-alive connections idle at that moment. A response
 *   that ends later (a stream just ended, a request that was in flight) leaves its connection open
 *   for the keep-alive timeout (Fastify: 72 s), and close() waits for it. So connections are
 *   dropped as they turn idle, between requests, where the client sees a clean end of connection.
 */
import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../app-context.js';
import { endStreams } from './stream.js';

const REAP_INTERVAL_MS = 50;

/** Closes the app as above; returns the number of ES-STREAM responses it ended. */
export async function closeHttp(app: FastifyInstance, ctx: AppContext): Promise<number> {
  const closing = app.close();
  const ended = endStreams(ctx);
  const reaper = setInterval(() => app.server.closeIdleConnections(), REAP_INTERVAL_MS);
  try {
    await closing;
  } finally {
    clearInterval(reaper);
  }
  return ended;
}
