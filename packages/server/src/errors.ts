/**
 * OpenAI error objects, and the mapping from whatever went wrong to an HTTP status.
 *
 * Clients (openai-node, openai-python) retry 408, 409, 429 and every 5xx, so an input that can
 * never succeed must be answered with a 4xx: a 500 for bad input gets sent three times.
 */
import type { Response } from 'express';

/** The `type` values OpenAI uses, plus the two llama.cpp and vLLM add for their own cases. */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable';

/** The body of every error response: `{ error: { message, type, param, code } }`. */
export interface ApiErrorBody {
  error: {
    message: string;
    type: ApiErrorType;
    /** The request field at fault (`messages`, `max_tokens`, `logit_bias`), or null. */
    param: string | null;
    /** A stable machine-readable reason (`context_length_exceeded`, `model_not_found`), or null. */
    code: string | null;
  };
}

/** An error that becomes exactly one HTTP response. */
export class ApiError extends Error {
  override readonly name = 'ApiError';

  constructor(
    readonly status: number,
    readonly type: ApiErrorType,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After, WWW-Authenticate, Allow). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  toBody(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400: the request is at fault; `param` names the field. */
export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, 'invalid_request_error', message, param, code);
}

/**
 * Turns any thrown value into an ApiError. Errors are matched by their `name` and `code` rather
 * than `instanceof`, because classes from another realm (jest's vm contexts) or another copy
 * of a package would not match.
 */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const { name, code, message } = describe(error);

  if (name === 'EngineError') {
    switch (code) {
      case 'PromptTooLongError':
        return invalidRequest(message, null, 'context_length_exceeded');
      case 'InvalidArgumentError':
        return invalidRequest(message);
      case 'OverloadedError':
        // Retry-After tells the client's retry logic to wait rather than hammer the queue.
        return new ApiError(429, 'rate_limit_error', message, null, 'server_overloaded', { 'Retry-After': '1' });
      case 'EngineClosedError':
        return new ApiError(503, 'service_unavailable', message, null, 'server_shutting_down');
      case 'ModelOutputError':
        // The model's fault (its logits for this request went NaN or infinite), not the
        // request's: a 500 that says what happened, not a bare internal error.
        return new ApiError(500, 'server_error', message, null, 'model_output_invalid');
    }
  }
  if (name === 'ChatTemplateError') {
    const template = error as { isClientError?: boolean; kind?: string };
    // The template rejected this conversation (e.g. `raise_exception('roles must alternate')`).
    if (template.isClientError === true) return invalidRequest(message, 'messages', 'invalid_chat');
    // A well-formed request this model's template cannot render (it fails on a field it did not
    // expect, or grows too large). Deterministic, so not a 5xx that clients would retry.
    if (template.kind === 'render_error' || template.kind === 'too_large') {
      return new ApiError(422, 'invalid_request_error', message, 'messages', 'template_render_failed');
    }
  }
  if (name === 'MistralrsError' && code === 'InvalidArgumentError') return invalidRequest(message);

  const bodyError = fromBodyParser(error);
  if (bodyError) return bodyError;

  return new ApiError(500, 'server_error', 'internal server error', null, 'internal_error');
}

/** True when the error is ours to log: a fault of the server, not of the request. */
export function isInternal(error: ApiError): boolean {
  return error.status >= 500;
}

/** Sends `error` as the response, unless headers already went out (see sse.ts for that case). */
export function sendApiError(res: Response, error: ApiError): void {
  if (res.headersSent) return;
  res.status(error.status).set(error.headers).json(error.toBody());
}

/**
 * express.json() (body-parser) marks its errors with a `type`; these are the request's fault.
 * A body that fails to parse must get a JSON error, never Express's HTML error page.
 */
function fromBodyParser(error: unknown): ApiError | undefined {
  const type = (error as { type?: unknown } | null)?.type;
  if (typeof type !== 'string') return undefined;
  const limit = (error as { limit?: unknown }).limit;
  switch (type) {
    case 'entity.parse.failed':
      return invalidRequest(`the request body is not valid JSON: ${(error as Error).message}`, null, 'invalid_json');
    case 'entity.too.large':
      return new ApiError(
        413,
        'invalid_request_error',
        `the request body is larger than the server's limit${typeof limit === 'number' ? ` of ${limit} bytes` : ''}`,
        null,
        'request_too_large',
      );
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ApiError(415, 'invalid_request_error', (error as Error).message, null, 'unsupported_encoding');
    case 'request.size.invalid':
    case 'stream.encoding.set':
    case 'request.aborted':
      return invalidRequest((error as Error).message);
    default:
      return undefined;
  }
}

function describe(error: unknown): { name: string; code: string; message: string } {
  if (error === null || typeof error !== 'object') return { name: '', code: '', message: String(error) };
  const e = error as { name?: unknown; code?: unknown; message?: unknown };
  return {
    name: typeof e.name === 'string' ? e.name : '',
    code: typeof e.code === 'string' ? e.code : '',
    message: typeof e.message === 'string' ? e.message : '',
  };
}
