/**
 * DNS rebinding guard for a server on loopback: a web page on `evil.example` whose name was
 * made to resolve to 127.0.0.1 would send `Host: evil.example`. Only the listed host names
 * (any port) are answered.
 */
import type { RequestHandler } from 'express';

import { ApiError, sendApiError } from './errors.js';

/** The names a loopback server is reached by. */
export const LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '[::1]'];

export function requireHost(allowedHosts: readonly string[]): RequestHandler {
  const allowed = new Set(allowedHosts.map((host) => host.toLowerCase()));
  return (req, res, next) => {
    const host = (req.get('host') ?? '').toLowerCase().replace(/:\d+$/, '');
    if (allowed.has(host)) return next();
    sendApiError(
      res,
      new ApiError(403, 'invalid_request_error', `requests for host ${JSON.stringify(host)} are not served here`, null, 'host_not_allowed'),
    );
  };
}
