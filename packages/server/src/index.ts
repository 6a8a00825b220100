export { createApp, type AppModels, type AppOptions, type AppSettings } from './app.js';
export {
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_HOST,
  isLoopbackHost,
  startServer,
  type ListenOptions,
  type RunningServer,
  type ServeOptions,
} from './serve.js';
export { defaultMemoryLimitBytes, engineFootprintBytes, pathBytes } from './model-footprint.js';
export {
  ModelPool,
  type MemoryState,
  type ModelLease,
  type ModelPoolOptions,
  type ModelState,
  type ModelStatus,
  type PoolEngine,
  type PoolModel,
  type ServedModels,
} from './model-pool.js';
export type { ModelStatusBody } from './routes/model-management.js';
export type { CorsOptions } from './cors.js';
export { ApiError, type ApiErrorBody, type ApiErrorCode, type ApiErrorType } from './errors.js';
export { DEFAULT_LIMITS, parseByteSize, type ServerLimits } from './limits.js';
export { METRICS_CONTENT_TYPE, ServerMetrics, type ObservableGeneration } from './metrics.js';
export { DEFAULT_MODEL_ALIAS, type CompletionDone } from './route-context.js';
export type { RunSummary, Usage } from './run-choices.js';
export type { StatsBody } from './routes/stats.js';
export { isEmbedder, type ServedModel, type ServingEmbedder, type ServingEngine } from './serving-engine.js';
