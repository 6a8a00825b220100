export {
  Engine,
  EngineError,
  type EngineErrorCode,
  type ChatRequest,
  type CompleteRequest,
  type EngineLoad,
  type EngineOptions,
  type ModelInfo,
} from './engine.js';
export { Generation } from './generation.js';
export { ModelNotFoundError, resolveGgufPath } from './model-source.js';
export type {
  FinishReason,
  GenerationChunk,
  GenerationOptions,
  GenerationResult,
  SamplingOptions,
  TokenLogprob,
} from './sampling.js';
export { StopStringMatcher } from './stop-strings.js';
