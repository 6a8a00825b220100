/**
 * The express app: routes, body parsing, auth, CORS and errors, without listening (tests call
 * `createApp` and listen on an ephemeral port; `startServer` in serve.ts does it for real).
 */
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';

import { requireApiKey } from './auth.js';
import { cors, type CorsOptions } from './cors.js';
import { ApiError, fromBodyParser, isInternal, sendApiError, toApiError } from './errors.js';
import { requireHost } from './host-check.js';
import { checkJsonDepth } from './json-depth.js';
import { metricsRoute, recordRequests, ServerMetrics } from './metrics.js';
import { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
import { ModelPool, type ServedModels } from './model-pool.js';
import type { AppContext, CompletionDone } from './route-context.js';
import { SHUTDOWN_LOCAL } from './run-choices.js';
import { anthropicCountTokensRoute, anthropicMessagesRoute } from './routes/anthropic-messages.js';
import { chatCompletionsRoute } from './routes/chat-completions.js';
import { completionsRoute } from './routes/completions.js';
import { embeddingsRoute } from './routes/embeddings.js';
import { responsesRoutes } from './routes/responses.js';
import { healthRoute } from './routes/health.js';
import { modelActionRoute, requireManagement } from './routes/model-management.js';
import { docsRoute, openApiRoute } from './routes/openapi.js';
import { listModelsRoute, retrieveModelRoute } from './routes/models.js';
import { statsRoute } from './routes/stats.js';
import { detokenizeRoute, tokenizeRoute } from './routes/tokenize.js';
import { WEB_UI_PATHS, webUiRoute } from './routes/web-ui.js';
import type { ServedModel } from './serving-engine.js';

/** What the server serves: one engine, or a pool of models. */
export type AppModels =
  | {
      engine: ServedModel;
      /** The id `/v1/models` lists and responses carry; requests may name it or `default`. */
      modelId: string;
      models?: never;
    }
  | {
      /** Models routed by the request's `model`, loaded and unloaded at run time (model-pool.ts). */
      models: ServedModels;
      engine?: never;
      modelId?: never;
    };

export type AppOptions = AppModels & AppSettings;

export interface AppSettings {
  /**
   * When set, every route but `GET /health`, `/openapi.json`, `/docs` and the chat page (`/` and
   * its files) needs `Authorization: Bearer <apiKey>`.
   */
  apiKey?: string;
  /**
   * Whether `POST /v1/models/load`, `/unload` and `/reload` are answered (else a 403
   * `model_management_disabled`). Default: when an API key is set (`startServer` also allows
   * them on a loopback address).
   */
  allowModelManagement?: boolean;
  /** Off when absent. */
  cors?: CorsOptions;
  limits?: Partial<ServerLimits>;
  /** Answer only requests whose Host header names one of these (DNS rebinding guard). */
  allowedHosts?: readonly string[];
  /** Called when a chat or text completion request has finished (or its client left). */
  onCompletionDone?: (done: CompletionDone) => void;
  /** What `GET /metrics` reports; default: a new `ServerMetrics` (metrics.ts). */
  metrics?: ServerMetrics;
  /** Called with each fault of the server (a 5xx); default: printed to stderr. */
  onInternalError?: (error: unknown) => void;
  /**
   * Aborted when a draining server's time is up (see serve.ts): chat and text completions
   * still running then end at once, a stream with an error event and `data: [DONE]`, any
   * other with a 503.
   */
  shutdownSignal?: AbortSignal;
}

/** Paths and the methods they answer; another method on one of them is a 405. */
const ROUTES: Readonly<Record<string, string>> = {
  '/v1/chat/completions': 'POST',
  '/v1/completions': 'POST',
  '/v1/messages': 'POST',
  '/v1/messages/count_tokens': 'POST',
  '/v1/responses': 'POST',
  '/v1/embeddings': 'POST',
  '/v1/models': 'GET',
  '/v1/models/status': 'POST',
  '/v1/models/load': 'POST',
  '/v1/models/unload': 'POST',
  '/v1/models/reload': 'POST',
  '/v1/stats': 'GET',
  '/health': 'GET',
  '/tokenize': 'POST',
  '/detokenize': 'POST',
  '/metrics': 'GET',
  '/openapi.json': 'GET',
  '/docs': 'GET',
  ...Object.fromEntries(WEB_UI_PATHS.map((path) => [path, 'GET'])),
};

export function createApp(options: AppOptions): Express {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const pool: ServedModels = options.models ?? ModelPool.of(options.engine, options.modelId);
  const ctx: AppContext = { pool, limits, onCompletionDone: options.onCompletionDone };
  const onInternalError = options.onInternalError ?? ((error: unknown) => console.error('mistralrs-server: internal error:', error));

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // First, so that the responses of every later middleware (401, 403, 413…) are counted.
  const metrics = options.metrics ?? new ServerMetrics();
  app.use(recordRequests(metrics, knownRoute));
  if (options.allowedHosts) app.use(requireHost(options.allowedHosts));
  if (options.cors) app.use(cors(options.cors));
  if (options.apiKey !== undefined) app.use(requireApiKey(options.apiKey));
  const { shutdownSignal } = options;
  if (shutdownSignal) {
    app.use((_req, res, next) => {
      res.locals[SHUTDOWN_LOCAL] = shutdownSignal;
      next();
    });
  }

  const json = jsonBody(limits);
  app.post('/v1/chat/completions', json, chatCompletionsRoute(ctx));
  app.post('/v1/completions', json, completionsRoute(ctx));
  app.post('/v1/messages', json, anthropicMessagesRoute(ctx));
  app.post('/v1/messages/count_tokens', json, anthropicCountTokensRoute(ctx));
  app.post('/v1/embeddings', json, embeddingsRoute(ctx));
  const responses = responsesRoutes(ctx);
  app.post('/v1/responses', json, responses.create);
  app.get('/v1/responses/:id', responses.retrieve);
  app.delete('/v1/responses/:id', responses.remove);
  app.get('/v1/responses/:id/input_items', responses.inputItems);
  app.get('/v1/models', listModelsRoute(pool));
  // `*model`: a Hugging Face id (`org/name`) spans two segments.
  app.get('/v1/models/*model', retrieveModelRoute(pool));
  app.post('/v1/models/status', json, modelActionRoute(pool, 'status'));
  const manage = requireManagement(options.allowModelManagement ?? options.apiKey !== undefined);
  for (const action of ['load', 'unload', 'reload'] as const)
    app.post(`/v1/models/${action}`, manage, json, modelActionRoute(pool, action));
  app.get('/v1/stats', statsRoute(ctx));
  app.get('/health', healthRoute(pool));
  app.post('/tokenize', json, tokenizeRoute(ctx));
  app.post('/detokenize', json, detokenizeRoute(ctx));
  app.get('/metrics', metricsRoute(metrics, pool));
  // Open without the API key (auth.ts): they describe the routes, no secret.
  app.get('/openapi.json', openApiRoute());
  app.get('/docs', docsRoute());
  // The chat page and its files (routes/web-ui.ts), open too: the page sends the key it is given.
  for (const path of WEB_UI_PATHS) app.get(path, webUiRoute(path));

  app.use(notFound);
  app.use(errorHandler(onInternalError));
  return app;
}

/**
 * JSON bodies only: a `text/plain` or form body is a 415. That matters beyond tidiness: a web
 * page can send those cross-origin without a CORS preflight, JSON it cannot. Whatever the
 * parser or the decompressor under it throws is the request's fault (errors.ts), and a body
 * nested too deep is refused before any route recurses into it.
 */
function jsonBody(limits: ServerLimits): RequestHandler[] {
  const requireJson: RequestHandler = (req, _res, next) => {
    if (req.is('application/json') || req.is('+json')) return next();
    const sent = req.get('content-type');
    throw new ApiError(
      415,
      'invalid_request_error',
      `the request body must be JSON with "Content-Type: application/json"${sent ? `, not ${JSON.stringify(sent)}` : ''}`,
      null,
      'unsupported_media_type',
    );
  };
  const parse = express.json({ limit: limits.maxBodyBytes });
  const parseJson: RequestHandler = (req, res, next) => {
    parse(req, res, (error?: unknown) => next(error === undefined ? undefined : (fromBodyParser(error) ?? error)));
  };
  const checkDepth: RequestHandler = (req, _res, next) => {
    checkJsonDepth(req.body, limits.maxJsonDepth);
    next();
  };
  return [requireJson, parseJson, checkDepth];
}

/** The route a request refused before routing was meant for, for the metrics' label. */
function knownRoute(req: express.Request): string | undefined {
  const path = routeKey(req.path);
  if (ROUTES[path] !== undefined) return path;
  return path.startsWith('/v1/models/') && req.method === 'GET' ? '/v1/models/*model' : undefined;
}

/** A path as ROUTES spells it: lower case, no trailing slash (but `/` itself). */
function routeKey(path: string): string {
  return path.toLowerCase().replace(/(?<=.)\/+$/, '');
}

/** 405 for a known path with another method; else 404, in OpenAI's words ("Invalid URL"). */
const notFound: RequestHandler = (req, _res) => {
  const method = ROUTES[routeKey(req.path)];
  if (method !== undefined && method !== req.method && !(method === 'GET' && req.method === 'HEAD')) {
    throw new ApiError(
      405,
      'invalid_request_error',
      `${req.method} is not allowed on ${req.path}; use ${method}`,
      null,
      'method_not_allowed',
      {
        Allow: method,
      },
    );
  }
  throw new ApiError(404, 'invalid_request_error', `Invalid URL (${req.method} ${req.path})`, null, 'not_found');
};

function errorHandler(onInternalError: (error: unknown) => void): ErrorRequestHandler {
  return (error: unknown, _req, res, _next) => {
    const apiError = toApiError(error);
    if (isInternal(apiError)) onInternalError(error);
    if (res.headersSent) {
      // A stream already carries its error as an event (run-choices.ts); just make sure it ends.
      if (!res.writableEnded) res.end();
      return;
    }
    sendApiError(res, apiError);
  };
}
