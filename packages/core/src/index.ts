export {
  cacheDir,
  DEFAULT_MODEL_ID,
  REGISTRY_MODELS,
  registryModel,
  type RegistryFileModel,
  type RegistryFolderModel,
  type RegistryModel,
  type RegistryModelPart,
} from './registry-models.js';
export { fetchRegistryModel, RegistryFetchError, sha256File, type FetchOptions } from './registry-fetch.js';
export { ARCHITECTURES, architectureMatrix, type ArchitectureRow } from './architectures.js';
export { resolveArchitecture, runtimeInfo, type ArchitectureEntry, type RuntimeInfo } from './runtime-info.js';
export {
  IncrementalDecoder,
  Tokenizer,
  type DecodeOptions,
  type EncodeOptions,
  type TokenType,
} from './tokenizer.js';
export * from './chat-template/index.js';
export * from './engine/index.js';
export * from './grammar/index.js';
export * from './tools/index.js';
export { formatBytes } from './bytes.js';
export * from './hub/index.js';
export * from './embedding/index.js';
