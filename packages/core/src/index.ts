export {
  cacheDir,
  DEFAULT_MODEL_ID,
  fetchRegistryModel,
  REGISTRY_MODELS,
  registryModel,
  sha256File,
  type FetchOptions,
  type RegistryModel,
  type RegistryModelPart,
} from './registry-models.js';
export { runtimeInfo, type RuntimeInfo } from './runtime-info.js';
