/**
 * GET /api/openapi.json: an OpenAPI 3.1 document generated from the views themselves, so it
 * cannot drift from what is served. Like every endpoint it needs credentials.
 */
import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../app-context.js';
import { authenticate } from './auth.js';
import { sendJson } from './envelope.js';
import { METHODS, type ViewDef } from './view.js';

const ENVELOPE = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['SUCCESS', 'FAILURE', 'PENDING', 'STARTED'] },
    result: {},
    task_id: { type: 'string' },
  },
};
const DETAIL = { type: 'object', properties: { detail: {} }, required: ['detail'] };

function openapiPath(path: string): string {
  return path.replace(/:([A-Za-z_]+)/g, '{$1}');
}

export function buildOpenApi(views: readonly ViewDef[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const view of views) {
    const params = [...view.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const mounts = view.dcBound ? [view.path, `/dc/:dcPrefix${view.path}`] : [view.path];
    for (const mount of mounts) {
      const item: Record<string, unknown> = {};
      const mountParams = mount === view.path ? params : [{ name: 'dcPrefix', in: 'path', required: true, schema: { type: 'string' } }, ...params];
      for (const method of METHODS) {
        if (!view.methods[method]) continue;
        item[method.toLowerCase()] = {
          operationId: `${view.name}_${method.toLowerCase()}${mount === view.path ? '' : '_dc'}`,
          summary: view.description,
          parameters: mountParams,
          ...(method === 'GET' ? {} : { requestBody: { required: false, content: { 'application/json': { schema: { type: 'object' } } } } }),
          ...(view.public ? { security: [] } : {}),
          responses: {
            '200': { description: 'Success', content: { 'application/json': { schema: {} } } },
            '201': { description: 'Created, or a task accepted (PENDING); with ES-STREAM the final status follows in the body' },
            '400': { description: 'Failure (validation errors or a failed task)', content: { 'application/json': { schema: ENVELOPE } } },
            '4XX': { description: 'Error', content: { 'application/json': { schema: DETAIL } } },
          },
        };
      }
      paths[`/api${openapiPath(mount)}/`] = item;
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'esnap API', version: '4.6', description: "Danube Cloud's VM snapshot API as served by esnap" },
    components: {
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'ES-API-KEY' },
        token: { type: 'apiKey', in: 'header', name: 'Authorization', description: 'Token <token> from POST /api/accounts/login/' },
      },
    },
    security: [{ apiKey: [] }, { token: [] }],
    paths,
  };
}

export function openapiRoute(app: FastifyInstance, ctx: AppContext, views: readonly ViewDef[]): void {
  const doc = buildOpenApi(views);
  app.get('/api/openapi.json', async (request, reply) => {
    await authenticate(ctx, request);
    await sendJson(reply, request, 200, doc);
  });
}
