/**
 * What route handlers are given: the app's context (the model pool, the limits), and per
 * request the model it names (`routeModel`): its engine and id.
 */
import { randomBytes } from 'node:crypto';

import type { Response } from 'express';

import type { ServerLimits } from './limits.js';
import { MODEL_LOCAL } from './metrics.js';
import type { ServedModels } from './model-pool.js';
import type { RunSummary } from './run-choices.js';
import { ApiError } from './errors.js';
import { isEmbedder, type ServingEmbedder, type ServingEngine } from './serving-engine.js';
import type { ValidationContext } from './validate.js';

export { DEFAULT_MODEL_ALIAS } from './model-pool.js';

/** A finished chat or text completion request, for access logs and tests. */
export interface CompletionDone extends RunSummary {
  endpoint: '/v1/chat/completions' | '/v1/completions' | '/v1/messages';
  stream: boolean;
  /** The model that answered. */
  model: string;
}

/** The app's, shared by every request. */
export interface AppContext {
  pool: ServedModels;
  limits: ServerLimits;
  onCompletionDone: ((done: CompletionDone) => void) | undefined;
}

/** One request's: the model it was routed to. */
export interface RouteContext {
  engine: ServingEngine;
  modelId: string;
  limits: ServerLimits;
  onCompletionDone: ((done: CompletionDone) => void) | undefined;
}

/**
 * Routes a request to the model its `model` names (an id, `default`, or undefined for the
 * default model), holding it until the response is closed, so that unloading the model waits
 * for this request. Throws 404 `model_not_found` (listing the ids), 400 `model_not_loaded`,
 * 503 `model_loading` (see ModelPool.acquire).
 */
export function routeModel(app: AppContext, requested: string | undefined, res: Response): RouteContext {
  const { model, modelId } = leaseModel(app, requested, res);
  if (isEmbedder(model)) throw wrongKind(modelId, 'an embedding model', `it answers POST /v1/embeddings, not ${res.req.path}`);
  return { engine: model, modelId, limits: app.limits, onCompletionDone: app.onCompletionDone };
}

/** As `routeModel`, for `/v1/embeddings`: the model must be an embedding model. */
export function routeEmbeddingModel(
  app: AppContext,
  requested: string | undefined,
  res: Response,
): { embedder: ServingEmbedder; modelId: string; limits: ServerLimits } {
  const { model, modelId } = leaseModel(app, requested, res);
  if (!isEmbedder(model))
    throw wrongKind(modelId, 'a text generation model', 'serve an embedding model (a sentence-transformers folder) for /v1/embeddings');
  return { embedder: model, modelId, limits: app.limits };
}

function leaseModel(app: AppContext, requested: string | undefined, res: Response) {
  const lease = app.pool.acquire(requested);
  res.once('close', lease.release);
  res.locals[MODEL_LOCAL] = lease.modelId; // the `model` label of its metrics
  return { model: lease.engine, modelId: lease.modelId };
}

/** 400 `model_not_supported`: the model cannot do what the route asks. */
function wrongKind(modelId: string, kind: string, hint: string): ApiError {
  return new ApiError(400, 'invalid_request_error', `${modelId} is ${kind}: ${hint}`, 'model', 'model_not_supported');
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
