/**
 * Loading and unloading models at run time, as mistral.rs's routes do:
 *
 *   POST /v1/models/status {"model": ID} → the model's state (never changes anything)
 *   POST /v1/models/load   {"model": ID} → loads it (200 once loaded; a no-op if it is)
 *   POST /v1/models/unload {"model": ID} → unloads it once the requests it is answering are done
 *   POST /v1/models/reload {"model": ID} → unloads (as above), then loads it again
 *
 * mistral.rs's `model_id` is accepted for `model`. Each answers
 * `{model_id, status, memory_bytes, in_flight, error?, memory: {limit_bytes, used_bytes}}`.
 * Only the models the server was started with can be loaded: a request never names a path.
 */
import type { RequestHandler } from 'express';

import { ApiError, invalidRequest } from '../errors.js';
import type { ModelState, ServedModels } from '../model-pool.js';
import { readString, requireObjectBody, type RequestBody } from '../validate.js';

export interface ModelStatusBody {
  model_id: string;
  status: ModelState['status'];
  memory_bytes: number | null;
  in_flight: number;
  error?: string;
  memory: { limit_bytes: number; used_bytes: number };
}

type Action = 'status' | 'load' | 'unload' | 'reload';

export function modelActionRoute(pool: ServedModels, action: Action): RequestHandler {
  return async (req, res) => {
    const id = requestedModel(requireObjectBody(req.body));
    const state = action === 'status' ? pool.state(id) : await pool[action](id);
    const memory = pool.memory();
    const body: ModelStatusBody = {
      model_id: state.id,
      status: state.status,
      memory_bytes: state.memoryBytes,
      in_flight: state.inFlight,
      ...(state.error !== undefined ? { error: state.error } : {}),
      memory: { limit_bytes: memory.limitBytes, used_bytes: memory.usedBytes },
    };
    res.set('Cache-Control', 'no-store').json(body);
  };
}

/**
 * Guards the routes that change what is loaded when `allowed` is false: a server reachable from
 * other machines without an API key must not let anyone load models into its memory.
 */
export function requireManagement(allowed: boolean): RequestHandler {
  return (_req, _res, next) => {
    if (allowed) return next();
    throw new ApiError(
      403,
      'invalid_request_error',
      'loading and unloading models is turned off on this server: it has no API key and is reachable from other machines ' +
        '(set --api-key, or bind to 127.0.0.1)',
      null,
      'model_management_disabled',
    );
  };
}

function requestedModel(body: RequestBody): string {
  const model = readString(body, 'model');
  const modelId = readString(body, 'model_id');
  if (model !== undefined && modelId !== undefined && model !== modelId) {
    throw invalidRequest('give model or model_id (the same field), not two different ids', 'model_id', 'conflicting_parameters');
  }
  const id = model ?? modelId;
  if (id === undefined) throw invalidRequest('model (the id of the model) is required', 'model', 'missing_required_parameter');
  return id;
}
