export { BlockPool, type BlockPoolOptions, type PrefixCacheStats } from './block-pool.js';
export { PagedKvCache, type AttentionOptions, type KvCacheConfig } from './kv-cache.js';
