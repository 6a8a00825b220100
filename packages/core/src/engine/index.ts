export {
  planChatPrompt,
  renderChatPrompt,
  unreadTemplateArguments,
  type ChatPromptPlan,
  type ChatPromptRequest,
  type ChatPromptTarget,
} from './chat-prompt.js';
export { EngineError, type EngineErrorCode } from './engine-error.js';
export { knownArchitectureNames, unknownArchitecture } from './architecture-check.js';
export {
  Engine,
  WEIGHT_DTYPES,
  type WeightDtype,
  type ChatRequest,
  type CompleteRequest,
  type EngineLoad,
  type EngineOptions,
  type ModelInfo,
} from './engine.js';
export { Generation } from './generation.js';
export {
  isHfFolder,
  type ModelFormat,
  ModelNotFoundError,
  type ModelSourceOptions,
  parseHubModelId,
  modelSourceOptions,
  resolveModelPath,
  resolveTokenizerDir,
} from './model-source.js';
export { DEFAULT_DRY_SEQUENCE_BREAKERS, MAX_DRY_BREAKER_BYTES } from './sampling.js';
export type {
  FinishReason,
  GenerationChunk,
  GenerationOptions,
  GenerationResult,
  SamplingOptions,
  TokenLogprob,
} from './sampling.js';
export { StopStringMatcher } from './stop-strings.js';
export type { SpeculationCounts } from './scheduler.js';
export {
  DEFAULT_GAMMA,
  type DraftSpeculation,
  type NgramSpeculation,
  type SpeculativeOptions,
} from './speculative.js';
