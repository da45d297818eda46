/**
 * GET /metrics (no trailing slash, outside /api): Prometheus text. It needs the API's own
 * credentials of a SuperAdmin (the metrics cover every DC): 403 otherwise, with the API's
 * messages; `ESNAP_METRICS_PUBLIC=1` serves it to anyone.
 */
import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../app-context.js';
import { authenticate } from './auth.js';
import { apiError } from '../domain/errors.js';
import type { Metrics } from '../metrics/metrics.js';

export function metricsRoute(app: FastifyInstance, ctx: AppContext, metrics: Metrics, opts: { public: boolean }): void {
  app.get('/metrics', async (request, reply) => {
    if (!opts.public) {
      const user = await authenticate(ctx, request);
      if (user.is_super_admin !== 1) throw apiError('permissionDenied');
    }
    const { contentType, body } = await metrics.render();
    return reply.code(200).type(contentType).send(body);
  });
}
