import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../app-context.js';
import type { ViewDef } from './view.js';

/** Placeholder until the OpenAPI document is generated from the views. */
export function openapiRoute(_app: FastifyInstance, _ctx: AppContext, _views: readonly ViewDef[]): void {}
