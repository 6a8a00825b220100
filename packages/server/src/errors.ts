/**
 * OpenAI error objects, and the mapping from whatever went wrong to an HTTP status.
 *
 * Clients (openai-node, openai-python) retry 408, 409, 429 and every 5xx, so an input that can
 * never succeed must be answered with a 4xx: a 500 for bad input gets sent three times.
 */
import type { Response } from 'express';

import { isGrammarTooComplex } from '@mistralrs/core';

import { anthropicError, isAnthropicPath } from './anthropic/errors.js';

/** The `type` values OpenAI uses, plus the two llama.cpp and vLLM add for their own cases. */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable';

/**
 * The stable reasons a request is refused (`error.code`); every 4xx carries one. Field
 * validation uses OpenAI's own codes where it has them (`invalid_type`,
 * `integer_above_max_value`, `missing_required_parameter`, ...).
 */
export type ApiErrorCode =
  // the body and its transport
  | 'invalid_json'
  | 'json_too_deep'
  | 'request_too_large'
  | 'unsupported_media_type'
  | 'unsupported_encoding'
  | 'invalid_content_encoding'
  | 'request_aborted'
  | 'request_header_fields_too_large'
  | 'request_timeout'
  | 'bad_request'
  // fields
  | 'missing_required_parameter'
  | 'invalid_type'
  | 'invalid_value'
  | 'empty_array'
  | 'empty_string'
  | 'integer_below_min_value'
  | 'integer_above_max_value'
  | 'decimal_below_min_value'
  | 'decimal_above_max_value'
  | 'array_above_max_length'
  | 'string_above_max_length'
  | 'unsupported_parameter'
  | 'unsupported_content'
  | 'conflicting_parameters'
  // what the model makes of the request
  | 'context_length_exceeded'
  | 'invalid_grammar'
  | 'grammar_too_complex'
  | 'invalid_chat'
  | 'template_render_failed'
  | 'no_chat_template'
  // routing and access
  | 'model_not_found'
  | 'model_not_loaded'
  /** A model of another kind than the route serves (an embedding model asked to chat). */
  | 'model_not_supported'
  | 'model_management_disabled'
  | 'model_not_manageable'
  | 'not_found'
  // /v1/responses: an id that was never stored, or was deleted or evicted
  | 'response_not_found'
  | 'previous_response_not_found'
  | 'method_not_allowed'
  | 'invalid_api_key'
  | 'host_not_allowed'
  // the server's state
  | 'server_overloaded'
  | 'server_shutting_down'
  | 'internal_error'
  // a model of the pool (model-pool.ts): coming up, or changing state, or too large to load
  | 'model_loading'
  | 'model_busy'
  | 'memory_limit_exceeded'
  | 'model_load_failed'
  // the model's output for a request was not finite (NaN or infinite logits)
  | 'model_output_invalid';

/** The body of every error response: `{ error: { message, type, param, code } }`. */
export interface ApiErrorBody {
  error: {
    message: string;
    type: ApiErrorType;
    /** The request field at fault (`messages`, `max_tokens`, `logit_bias`), or null. */
    param: string | null;
    /** A stable machine-readable reason (`context_length_exceeded`, `model_not_found`). */
    code: ApiErrorCode;
  };
}

/** An error that becomes exactly one HTTP response. */
export class ApiError extends Error {
  override readonly name = 'ApiError';

  constructor(
    readonly status: number,
    readonly type: ApiErrorType,
    message: string,
    readonly param: string | null,
    readonly code: ApiErrorCode,
    /** Extra response headers (Retry-After, WWW-Authenticate, Allow). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  toBody(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400: the request is at fault; `param` names the field (null only when no field is). */
export function invalidRequest(message: string, param: string | null, code: ApiErrorCode = 'invalid_value'): ApiError {
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
        return invalidRequest(message, null, 'invalid_value');
      case 'OverloadedError':
        // Retry-After tells the client's retry logic to wait rather than hammer the queue.
        return new ApiError(429, 'rate_limit_error', message, null, 'server_overloaded', { 'Retry-After': '1' });
      case 'EngineClosedError':
        return shuttingDown(message);
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
    // A well-formed request this model's template cannot render: it fails on a field it did
    // not expect, grows too large, runs out of time or memory. Deterministic, so not a 5xx
    // that clients would retry.
    if (template.kind && RENDER_FAILURES.has(template.kind)) {
      return new ApiError(422, 'invalid_request_error', message, 'messages', 'template_render_failed');
    }
  }
  if (name === 'MistralrsError' && code === 'InvalidArgumentError') {
    return invalidRequest(message, null, isGrammarTooComplex(error) ? 'grammar_too_complex' : 'invalid_value');
  }

  const bodyError = fromBodyParser(error);
  if (bodyError) return bodyError;

  return new ApiError(500, 'server_error', 'internal server error', null, 'internal_error');
}

/** The failures of a render (see ChatTemplateErrorKind); `invalid_template` is the model's. */
const RENDER_FAILURES: ReadonlySet<string> = new Set(['render_error', 'too_large', 'timeout', 'out_of_memory']);

/** 503 while the server drains or the engine is closed; clients retry it elsewhere or later. */
export function shuttingDown(message = 'the server is shutting down'): ApiError {
  return new ApiError(503, 'service_unavailable', message, null, 'server_shutting_down', { Connection: 'close' });
}

/** True when the error is ours to log: a fault of the server, not of the request or a drain. */
export function isInternal(error: ApiError): boolean {
  return error.status >= 500 && !EXPECTED_5XX.has(error.code);
}

/** 5xx answers that are the server's state, not its fault: nothing to log. */
const EXPECTED_5XX: ReadonlySet<ApiErrorCode> = new Set(['server_shutting_down', 'model_loading', 'memory_limit_exceeded']);

/** Sends `error` as the response, unless headers already went out (see sse.ts for that case). */
export function sendApiError(res: Response, error: ApiError): void {
  if (res.headersSent) return;
  // Anthropic's routes answer in Anthropic's shape and statuses, which its SDKs parse.
  if (isAnthropicPath(res.req?.path)) {
    const { status, body } = anthropicError(error);
    res.status(status).set(error.headers).json(body);
    return;
  }
  res.status(error.status).set(error.headers).json(error.toBody());
}

/**
 * What express.json() (body-parser) and the decompressor under it throw; each is the
 * request's fault, and must get a JSON error, never Express's HTML page or a 500. body-parser
 * marks its own errors with a `type`; a body whose Content-Encoding lies (says gzip, deflate
 * or br and is not) fails in zlib, whose errors carry only zlib's `code` and the 400 status
 * body-parser gives them.
 */
export function fromBodyParser(error: unknown): ApiError | undefined {
  const e = (error ?? {}) as { type?: unknown; limit?: unknown; code?: unknown; status?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(error);
  switch (e.type) {
    case 'entity.parse.failed':
      return invalidRequest(`the request body is not valid JSON: ${message}`, null, 'invalid_json');
    case 'entity.too.large': {
      const limit = typeof e.limit === 'number' ? ` of ${e.limit} bytes` : '';
      return new ApiError(
        413,
        'invalid_request_error',
        `the request body is larger than the server's limit${limit}`,
        null,
        'request_too_large',
      );
    }
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ApiError(415, 'invalid_request_error', message, null, 'unsupported_encoding');
    case 'request.aborted':
      // Nobody reads this answer: the client closed the connection mid-body.
      return invalidRequest('the request was aborted before its body arrived', null, 'request_aborted');
    case 'request.size.invalid':
      return invalidRequest(`the request body does not match its Content-Length: ${message}`, null, 'bad_request');
  }
  if (typeof e.code === 'string' && /^(Z_|ERR__ERROR_|ERR_BROTLI|ERR_ZSTD|ZSTD_)/.test(e.code)) {
    return invalidRequest(`the request body could not be decoded with its Content-Encoding: ${message}`, null, 'invalid_content_encoding');
  }
  // Any other error that http-errors marked as the client's (a 4xx it may show).
  const status = typeof e.status === 'number' ? e.status : 0;
  if (status >= 400 && status < 500 && (error as { expose?: unknown }).expose === true) {
    return new ApiError(status, 'invalid_request_error', message, null, 'bad_request');
  }
  return undefined;
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
