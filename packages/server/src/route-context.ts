/** What every route handler is given: the engine, the served model's id, the limits. */
import { randomBytes } from 'node:crypto';

import { ApiError } from './errors.js';
import type { ServerLimits } from './limits.js';
import type { RunSummary } from './run-choices.js';
import type { ServingEngine } from './serving-engine.js';
import type { ValidationContext } from './validate.js';

/** A finished chat or text completion request, for access logs and tests. */
export interface CompletionDone extends RunSummary {
  endpoint: '/v1/chat/completions' | '/v1/completions';
  stream: boolean;
}

export interface RouteContext {
  engine: ServingEngine;
  modelId: string;
  limits: ServerLimits;
  onCompletionDone: ((done: CompletionDone) => void) | undefined;
}

/** The names a request may give in `model`: the served id, or `default`. */
export const DEFAULT_MODEL_ALIAS = 'default';

/**
 * 404 `model_not_found` unless `requested` names the served model. A missing `model` means the
 * served one (OpenAI requires the field; local servers commonly do not).
 */
export function checkModel(requested: string | undefined, ctx: RouteContext): void {
  if (requested === undefined || requested === ctx.modelId || requested === DEFAULT_MODEL_ALIAS) return;
  throw new ApiError(
    404,
    'invalid_request_error',
    `the model ${JSON.stringify(requested)} does not exist; this server serves ${JSON.stringify(ctx.modelId)}`,
    'model',
    'model_not_found',
  );
}

export function validationContext(ctx: RouteContext): ValidationContext {
  // A token id must have an embedding row and a piece of text: the smaller vocabulary bounds both.
  const vocabSize = Math.min(ctx.engine.info.vocabSize, ctx.engine.tokenizer.vocabSize);
  return { vocabSize, contextTokens: ctx.engine.contextTokens, limits: ctx.limits };
}

/** `chatcmpl-…` / `cmpl-…`: OpenAI's prefixes, then 24 random hex digits. */
export function newCompletionId(prefix: 'chatcmpl' | 'cmpl'): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}
