/**
 * Anthropic's error shape, for the routes of its Messages API: `{"type": "error", "error":
 * {"type", "message"}}` with Anthropic's status for each kind of failure. Its SDKs pick the
 * exception class by status and read `error.type` and `error.message`, so every refusal the
 * server makes (auth, body parsing, routing, validation, the engine) is mapped here rather
 * than answered in OpenAI's shape.
 */
import type { ApiError } from '../errors.js';

/** Anthropic's `error.type` values (docs: "HTTP errors"). */
export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

export interface AnthropicErrorBody {
  type: 'error';
  error: { type: AnthropicErrorType; message: string };
}

/** Whether `path` is one of the Anthropic routes (`/v1/messages`, `/v1/messages/count_tokens`, and
 * any path below it, so that a 404 there is Anthropic's too). Express matches paths without
 * regard to case or a trailing slash; so does this. */
export function isAnthropicPath(path: string | undefined): boolean {
  if (path === undefined) return false;
  const p = path.toLowerCase().replace(/\/+$/, '');
  return p === '/v1/messages' || p.startsWith('/v1/messages/');
}

/**
 * The status and body Anthropic would answer for `error`. A full queue or a server that is
 * draining or still loading the model is `overloaded_error` (529, which Anthropic's clients
 * retry after a pause), never a 5xx that reads as a fault; other statuses keep their number.
 */
export function anthropicError(error: ApiError): { status: number; body: AnthropicErrorBody } {
  const { status, type } = anthropicStatus(error);
  return { status, body: { type: 'error', error: { type, message: error.message } } };
}

function anthropicStatus(error: ApiError): { status: number; type: AnthropicErrorType } {
  if (error.code === 'server_overloaded' || error.status === 503) return { status: 529, type: 'overloaded_error' };
  switch (error.status) {
    case 401:
      return { status: 401, type: 'authentication_error' };
    case 403:
      return { status: 403, type: 'permission_error' };
    case 404:
      return { status: 404, type: 'not_found_error' };
    case 413:
      return { status: 413, type: 'request_too_large' };
    case 429:
      return { status: 429, type: 'rate_limit_error' };
  }
  if (error.status >= 500) return { status: error.status, type: 'api_error' };
  // "We may also use this error type for other 4XX status codes" (400, 405, 415, 422).
  return { status: error.status, type: 'invalid_request_error' };
}
