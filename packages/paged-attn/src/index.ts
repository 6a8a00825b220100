export { BlockPool, type BlockPoolOptions, type PrefixCacheStats } from './block-pool.js';
