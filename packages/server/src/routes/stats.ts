/**
 * GET /v1/stats: what the scheduler and the KV cache are doing now, for dashboards and load
 * balancers (how busy the server is, how much of the cache is free, whether prefixes hit).
 * Snake case, as every other body the server sends.
 */
import type { RequestHandler } from 'express';

import { routeModel, type AppContext } from '../route-context.js';

export interface StatsBody {
  model: string;
  /** Sequences generating now (each choice of a request is one). */
  running: number;
  /** Sequences waiting for a place; past the engine's `maxWaiting`, requests get a 429. */
  waiting: number;
  /** KV blocks no running sequence holds (cached prefix blocks nobody uses count as free). */
  free_blocks: number;
  total_blocks: number;
  /** Tokens per KV block. */
  block_size: number;
  kv_cache_bytes: number;
  /** Sequences sent back to waiting since the start, because the KV cache ran out. */
  preemptions: number;
  /** Counts since the start, in blocks: looked up, found, evicted; and cached now. */
  prefix_cache: { queried_blocks: number; hit_blocks: number; evicted_blocks: number; cached_blocks: number };
  /** Speculative decoding since the start: verify steps, tokens proposed, tokens kept. */
  speculation: { verify_steps: number; proposed_tokens: number; accepted_tokens: number };
}

/** The default model's, or `?model=ID`'s. */
export function statsRoute(app: AppContext): RequestHandler {
  return (req, res) => {
    const requested = typeof req.query.model === 'string' ? req.query.model : undefined;
    const ctx = routeModel(app, requested, res);
    const { info, load } = ctx.engine;
    const body: StatsBody = {
      model: ctx.modelId,
      running: load.running,
      waiting: load.waiting,
      free_blocks: load.freeBlocks,
      total_blocks: info.nBlocks,
      block_size: info.blockSize,
      kv_cache_bytes: info.kvCacheBytes,
      preemptions: load.preemptions,
      prefix_cache: {
        queried_blocks: load.prefixCache.queriedBlocks,
        hit_blocks: load.prefixCache.hitBlocks,
        evicted_blocks: load.prefixCache.evictedBlocks,
        cached_blocks: load.prefixCache.cachedBlocks,
      },
      speculation: {
        verify_steps: load.speculation.steps,
        proposed_tokens: load.speculation.proposed,
        accepted_tokens: load.speculation.accepted,
      },
    };
    res.set('Cache-Control', 'no-store').json(body);
  };
}
