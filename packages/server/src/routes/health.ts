/** GET /health: 200 while the server takes requests (open even when an API key is set). */
import type { RequestHandler } from 'express';

import type { ServedModels } from '../model-pool.js';

/** `model`: the default model's id (whether or not it is loaded: health is the server's). */
export function healthRoute(pool: ServedModels): RequestHandler {
  return (_req, res) => {
    res.json({ status: 'ok', model: pool.defaultId });
  };
}
