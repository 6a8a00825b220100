/**
 * CORS, off unless origins are configured. A listed origin is echoed back (with
 * `Vary: Origin`); `*` allows any origin. Credentials are never allowed: a browser page must
 * not ride on a user's cookies, and an API key is sent by the page itself.
 */
import type { RequestHandler } from 'express';

export interface CorsOptions {
  /** Exact origins (`https://app.example.com`), or `*` for any. */
  origins: readonly string[];
}

export function cors(options: CorsOptions): RequestHandler {
  const anyOrigin = options.origins.includes('*');
  const allowed = new Set(options.origins);
  return (req, res, next) => {
    res.vary('Origin');
    const origin = req.get('origin');
    if (origin === undefined || !(anyOrigin || allowed.has(origin))) return next();
    res.set('Access-Control-Allow-Origin', anyOrigin ? '*' : origin);
    res.set('Access-Control-Expose-Headers', 'x-request-id, retry-after');
    if (req.method !== 'OPTIONS' || req.get('access-control-request-method') === undefined) return next();
    // A preflight: browsers send it without credentials, so it is answered before the key check.
    res.set({
      'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
      // openai-node sends x-stainless-* headers; mirror what the browser asks for.
      'Access-Control-Allow-Headers': req.get('access-control-request-headers') ?? 'authorization, content-type',
      'Access-Control-Max-Age': '600',
    });
    res.vary('Access-Control-Request-Headers');
    res.status(204).end();
  };
}
