/** GET /v1/models and GET /v1/models/:model: every model of the server, with its status. */
import type { RequestHandler } from 'express';

import type { ModelState, ModelStatus, ServedModels } from '../model-pool.js';

export interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** mistral.rs's field: whether requests naming it are answered now (`loaded`). */
  status: ModelStatus;
}

export function modelObject(state: ModelState, created: number): ModelObject {
  return { id: state.id, object: 'model', created, owned_by: 'mistralrs', status: state.status };
}

export function listModelsRoute(pool: ServedModels): RequestHandler {
  const created = Math.floor(Date.now() / 1000);
  return (_req, res) => {
    res.set('Cache-Control', 'no-store').json({ object: 'list', data: pool.list().map((state) => modelObject(state, created)) });
  };
}

/** `default` names the default model; an unknown id is a 404 `model_not_found` listing the ids. */
export function retrieveModelRoute(pool: ServedModels): RequestHandler {
  const created = Math.floor(Date.now() / 1000);
  return (req, res) => {
    const segments = (req.params as { model?: string | string[] }).model ?? [];
    const id = typeof segments === 'string' ? segments : segments.join('/');
    res.set('Cache-Control', 'no-store').json(modelObject(pool.state(id), created));
  };
}
