/** GET /v1/models and GET /v1/models/:model: the one model this server serves. */
import type { RequestHandler } from 'express';

import { ApiError } from '../errors.js';
import { DEFAULT_MODEL_ALIAS, type RouteContext } from '../route-context.js';

export interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

export function modelObject(ctx: RouteContext, created: number): ModelObject {
  return { id: ctx.modelId, object: 'model', created, owned_by: 'mistralrs' };
}

export function listModelsRoute(ctx: RouteContext): RequestHandler {
  const created = Math.floor(Date.now() / 1000);
  return (_req, res) => {
    res.json({ object: 'list', data: [modelObject(ctx, created)] });
  };
}

export function retrieveModelRoute(ctx: RouteContext): RequestHandler {
  const created = Math.floor(Date.now() / 1000);
  return (req, res) => {
    const requested = req.params.model;
    if (requested !== ctx.modelId && requested !== DEFAULT_MODEL_ALIAS) {
      throw new ApiError(404, 'invalid_request_error', `the model ${JSON.stringify(requested)} does not exist`, 'model', 'model_not_found');
    }
    res.json(modelObject(ctx, created));
  };
}
