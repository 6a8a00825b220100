/**
 * `--api-key`: every route needs `Authorization: Bearer KEY` (or `x-api-key: KEY`) except `GET /health`,
 * `/openapi.json` and `/docs` (which describe the routes, no secret, as mistral.rs and vLLM serve them), and the
 * chat page's files (`/`, `/ui/…`: the page asks for the key and sends it with its own API calls). Deny by
 * default, before routing, so no path spelling (`/V1/…`, a trailing slash) slips past it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import type { RequestHandler } from 'express';

import { ApiError, sendApiError } from './errors.js';
import { WEB_UI_PATHS } from './routes/web-ui.js';

const OPEN_PATHS: ReadonlySet<string> = new Set(['/health', '/openapi.json', '/docs', ...WEB_UI_PATHS]);

export function requireApiKey(apiKey: string): RequestHandler {
  const expected = digest(apiKey);
  return (req, res, next) => {
    if ((req.method === 'GET' || req.method === 'HEAD') && OPEN_PATHS.has(req.path)) return next();
    // `Authorization: Bearer KEY` (OpenAI's clients) or `x-api-key: KEY` (Anthropic's).
    const key = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1] ?? req.get('x-api-key');
    // Comparing digests in constant time: the time taken says nothing about the key.
    if (key !== undefined && timingSafeEqual(digest(key), expected)) return next();
    const message =
      key !== undefined
        ? 'incorrect API key provided'
        : 'no API key provided: send it in the header "Authorization: Bearer YOUR_KEY" (or "x-api-key: YOUR_KEY")';
    sendApiError(res, new ApiError(401, 'invalid_request_error', message, null, 'invalid_api_key', { 'WWW-Authenticate': 'Bearer' }));
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
