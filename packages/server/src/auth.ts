/**
 * `--api-key`: every route needs `Authorization: Bearer KEY` except `GET /health`. Deny by
 * default, before routing, so no path spelling (`/V1/…`, a trailing slash) slips past it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import type { RequestHandler } from 'express';

import { ApiError, sendApiError } from './errors.js';

export function requireApiKey(apiKey: string): RequestHandler {
  const expected = digest(apiKey);
  return (req, res, next) => {
    if ((req.method === 'GET' || req.method === 'HEAD') && req.path === '/health') return next();
    const match = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '');
    // Comparing digests in constant time: the time taken says nothing about the key.
    if (match && timingSafeEqual(digest(match[1]!), expected)) return next();
    const message = match ? 'incorrect API key provided' : 'no API key provided: send it in the header "Authorization: Bearer YOUR_KEY"';
    sendApiError(res, new ApiError(401, 'invalid_request_error', message, null, 'invalid_api_key', { 'WWW-Authenticate': 'Bearer' }));
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
