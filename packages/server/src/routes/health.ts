/** GET /health: 200 while the server takes requests (open even when an API key is set). */
import type { RequestHandler } from 'express';

export function healthRoute(modelId: string): RequestHandler {
  return (_req, res) => {
    res.json({ status: 'ok', model: modelId });
  };
}
