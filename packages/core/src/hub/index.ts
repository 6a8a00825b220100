export { CachedRepo, hfHome, hubCacheDir, isCommitHash, tryLoadFromCache } from './cache.js';
export { HubError, type HubErrorKind } from './errors.js';
export { chooseGgufFiles, ggufModelFiles, isCheckpointRepo, splitGgufParts } from './model-files.js';
export { progressReporter, type DownloadProgress, type ProgressFactory } from './progress.js';
export { DEFAULT_ENDPOINT, hubEndpoint, HubRepository, isRepoId, type HubFile, type HubOptions } from './repository.js';
export { DEFAULT_TOKEN_SOURCE, resolveToken, type TokenSource } from './token.js';
