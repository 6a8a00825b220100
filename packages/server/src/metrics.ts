/**
 * GET /metrics: the server's counters, histograms and gauges in Prometheus' text exposition
 * format (version 0.0.4), written here rather than through a client library: the format is a
 * few lines per family, and what matters (escaping, cumulative buckets, one family per name)
 * is tested against a real parser.
 *
 * Recorded from two places. `recordRequests` (the app's first middleware) counts every
 * response by route pattern and status, the refused ones (401, 404, 413…) included; a path no
 * route knows is counted as `route="unmatched"`, never as itself, so a scanner cannot grow the
 * label set. The generation path (run-choices.ts) wraps each generation with
 * `observeGeneration`: time to first token, inter-token latency and generated tokens, per
 * model. Gauges (running, waiting, KV blocks, prefix cache) are read from each loaded model's
 * engine at scrape time.
 */
import type { GenerationChunk, GenerationResult } from '@mistralrs/core';
import type { Request, RequestHandler, Response } from 'express';

import type { ServedModels } from './model-pool.js';
import { isEmbedder, type ServingEngine } from './serving-engine.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Seconds from a generation's submission to its first token (vLLM's buckets, finer below 10 ms). */
export const TTFT_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
];
/** Seconds between tokens of one generation (a CPU decode step of a small model is milliseconds). */
export const ITL_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10, 20, 40, 80,
];

/** The route label of a path no route answers (404s, and 405s of unknown paths). */
export const UNMATCHED_ROUTE = 'unmatched';
/** The status label of a request whose client left before its response began (nginx's 499). */
export const CLIENT_CLOSED_STATUS = 499;

/** Where the app leaves its metrics for the generation path (`res.locals[METRICS_LOCAL]`). */
export const METRICS_LOCAL = 'mistralrsMetrics';
/** Where `routeModel` leaves the id of the model a request was routed to. */
export const MODEL_LOCAL = 'mistralrsModel';

/** What `observeGeneration` wraps: an engine generation (chunks, and the whole result). */
export interface ObservableGeneration extends AsyncIterable<GenerationChunk> {
  readonly result: Promise<GenerationResult>;
}

type Labels = Readonly<Record<string, string>>;

class Histogram {
  /** Observations per bucket (not cumulative), the last one past every bound (+Inf). */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = this.bounds.findIndex((bound) => value <= bound);
    if (i < 0) i = this.bounds.length;
    this.counts[i]! += 1;
    this.sum += value;
    this.count += 1;
  }
}

/** Series of one family, keyed by their label values. */
class Series<T> {
  readonly #series = new Map<string, { labels: Labels; value: T }>();

  constructor(readonly create: () => T) {}

  get(labels: Labels): T {
    const key = JSON.stringify(Object.entries(labels));
    let entry = this.#series.get(key);
    if (!entry) {
      entry = { labels, value: this.create() };
      this.#series.set(key, entry);
    }
    return entry.value;
  }

  entries(): Array<{ labels: Labels; value: T }> {
    return [...this.#series.values()];
  }
}

const counter = () => new Series(() => ({ value: 0 }));

export class ServerMetrics {
  readonly #requests = counter();
  readonly #promptTokens = counter();
  readonly #generatedTokens = counter();
  readonly #ttft = new Series(() => new Histogram(TTFT_BUCKETS_SECONDS));
  readonly #itl = new Series(() => new Histogram(ITL_BUCKETS_SECONDS));

  /** One response, by route pattern (never the raw path), status and model ('' for none). */
  recordRequest(route: string, status: number, model: string): void {
    this.#requests.get({ route, status: String(status), model }).value += 1;
  }

  /** A request's prompt tokens, each distinct prompt once (as its `usage.prompt_tokens`). */
  recordPromptTokens(model: string, tokens: number): void {
    this.#promptTokens.get({ model }).value += tokens;
  }

  /**
   * Times `generation` as its chunks are read (first token, then between tokens: a chunk of k
   * tokens held back together counts k gaps of 1/k of its wait), and counts its generated
   * tokens when it ends, cancelled ones included. `submittedAt` is `performance.now()` when
   * the generation was submitted to the engine.
   */
  observeGeneration(model: string, generation: ObservableGeneration, submittedAt: number): ObservableGeneration {
    const ttft = this.#ttft.get({ model });
    const itl = this.#itl.get({ model });
    generation.result.then(
      (result) => {
        this.#generatedTokens.get({ model }).value += result.usage.completionTokens;
      },
      () => undefined,
    );
    return {
      result: generation.result,
      async *[Symbol.asyncIterator]() {
        let last: number | undefined;
        for await (const chunk of generation) {
          const tokens = chunk.tokenIds.length;
          if (tokens > 0) {
            const now = performance.now();
            if (last === undefined) ttft.observe((now - submittedAt) / 1000);
            else for (let i = 0; i < tokens; i++) itl.observe((now - last) / 1000 / tokens);
            last = now;
          }
          yield chunk;
        }
      },
    };
  }

  /** The exposition: the recorded series, then the gauges of `pool`'s loaded models. */
  render(pool?: ServedModels): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    const counters = (name: string, help: string, series: Series<{ value: number }>) => {
      family(name, 'counter', help);
      for (const { labels, value } of series.entries()) out.push(sample(name, labels, value.value));
    };
    const histograms = (name: string, help: string, series: Series<Histogram>) => {
      family(name, 'histogram', help);
      for (const { labels, value } of series.entries()) out.push(...histogramLines(name, labels, value));
    };
    counters('mistralrs_requests_total', 'HTTP responses, by route pattern, status code and model.', this.#requests);
    counters('mistralrs_prompt_tokens_total', 'Prompt tokens of finished requests, each distinct prompt once.', this.#promptTokens);
    counters('mistralrs_generated_tokens_total', 'Tokens generated, every choice counted.', this.#generatedTokens);
    histograms(
      'mistralrs_time_to_first_token_seconds',
      'Seconds from submitting a generation to the engine to its first token.',
      this.#ttft,
    );
    histograms('mistralrs_inter_token_latency_seconds', 'Seconds between consecutive tokens of a generation.', this.#itl);
    if (pool) out.push(...gaugeLines(pool));
    return `${out.join('\n')}\n`;
  }
}

/** What one loaded model's engine reports, as gauges and as the engine's own counters. */
function gaugeLines(pool: ServedModels): string[] {
  const engines: Array<{ model: string; read: ReturnType<typeof readEngine> }> = [];
  const embedders: Array<{ model: string; waiting: number }> = [];
  const states = pool.list();
  for (const state of states) {
    if (state.status !== 'loaded') continue;
    let lease: ReturnType<ServedModels['acquire']>;
    try {
      lease = pool.acquire(state.id);
    } catch {
      continue; // began unloading since list()
    }
    try {
      // An embedding model has no batch of sequences nor KV cache: only its queue.
      if (isEmbedder(lease.engine)) embedders.push({ model: state.id, waiting: lease.engine.waiting });
      else engines.push({ model: state.id, read: readEngine(lease.engine) });
    } finally {
      lease.release();
    }
  }
  const out: string[] = [];
  const gauge = (name: string, type: 'gauge' | 'counter', help: string, value: (r: ReturnType<typeof readEngine>) => number) => {
    out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const { model, read } of engines) out.push(sample(name, { model }, value(read)));
  };
  out.push('# HELP mistralrs_model_loaded 1 when the model is loaded and serving, else 0.', '# TYPE mistralrs_model_loaded gauge');
  for (const state of states) out.push(sample('mistralrs_model_loaded', { model: state.id }, state.status === 'loaded' ? 1 : 0));
  gauge('mistralrs_requests_running', 'gauge', 'Sequences generating now (each choice of a request is one).', (r) => r.load.running);
  gauge('mistralrs_requests_waiting', 'gauge', 'Sequences waiting for a place in the batch.', (r) => r.load.waiting);
  gauge('mistralrs_kv_blocks_used', 'gauge', 'KV cache blocks held by running sequences.', (r) => r.nBlocks - r.load.freeBlocks);
  gauge('mistralrs_kv_blocks_total', 'gauge', 'KV cache blocks of the model.', (r) => r.nBlocks);
  gauge('mistralrs_kv_block_size_tokens', 'gauge', 'Tokens per KV cache block.', (r) => r.blockSize);
  gauge(
    'mistralrs_preemptions_total',
    'counter',
    'Sequences sent back to waiting because the KV cache ran out.',
    (r) => r.load.preemptions,
  );
  const prefix = (r: ReturnType<typeof readEngine>) => r.load.prefixCache;
  gauge(
    'mistralrs_prefix_cache_queried_blocks_total',
    'counter',
    'KV blocks looked up in the prefix cache.',
    (r) => prefix(r).queriedBlocks,
  );
  gauge('mistralrs_prefix_cache_hit_blocks_total', 'counter', 'KV blocks found in the prefix cache.', (r) => prefix(r).hitBlocks);
  gauge(
    'mistralrs_prefix_cache_evicted_blocks_total',
    'counter',
    'KV blocks evicted from the prefix cache.',
    (r) => prefix(r).evictedBlocks,
  );
  gauge('mistralrs_prefix_cache_cached_blocks', 'gauge', 'KV blocks the prefix cache holds now.', (r) => prefix(r).cachedBlocks);
  const speculation = (r: ReturnType<typeof readEngine>) => r.load.speculation;
  gauge(
    'mistralrs_speculative_verify_steps_total',
    'counter',
    'Steps in which a sequence verified proposed tokens (speculative decoding).',
    (r) => speculation(r).steps,
  );
  gauge('mistralrs_speculative_proposed_tokens_total', 'counter', 'Tokens proposed for verification.', (r) => speculation(r).proposed);
  gauge('mistralrs_speculative_accepted_tokens_total', 'counter', 'Proposed tokens the model kept.', (r) => speculation(r).accepted);
  if (embedders.length > 0) {
    out.push(
      '# HELP mistralrs_embedding_inputs_waiting Inputs waiting for an embedding pass.',
      '# TYPE mistralrs_embedding_inputs_waiting gauge',
    );
    for (const { model, waiting } of embedders) out.push(sample('mistralrs_embedding_inputs_waiting', { model }, waiting));
  }
  return out;
}

function readEngine(engine: ServingEngine) {
  return { load: engine.load, nBlocks: engine.info.nBlocks, blockSize: engine.info.blockSize };
}

function histogramLines(name: string, labels: Labels, h: Histogram): string[] {
  const out: string[] = [];
  let cumulative = 0;
  h.bounds.forEach((bound, i) => {
    cumulative += h.counts[i]!;
    out.push(sample(`${name}_bucket`, { ...labels, le: formatNumber(bound) }, cumulative));
  });
  out.push(sample(`${name}_bucket`, { ...labels, le: '+Inf' }, h.count));
  out.push(sample(`${name}_sum`, labels, h.sum));
  out.push(sample(`${name}_count`, labels, h.count));
  return out;
}

function sample(name: string, labels: Labels, value: number): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return `${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${formatNumber(value)}`;
}

/** A label value's escapes: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** A HELP text's escapes: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

/**
 * Counts every response once, when it ends: by the route pattern express matched, else by
 * `knownRoute(path)` (a request refused before routing: 401, 403, 413…), else as `unmatched`.
 * A response the client abandoned before it began counts as 499.
 */
export function recordRequests(metrics: ServerMetrics, knownRoute: (req: Request) => string | undefined): RequestHandler {
  return (req, res, next) => {
    res.locals[METRICS_LOCAL] = metrics;
    let counted = false;
    const count = () => {
      if (counted) return;
      counted = true;
      const model = res.locals[MODEL_LOCAL];
      const status = res.headersSent ? res.statusCode : CLIENT_CLOSED_STATUS;
      metrics.recordRequest(routeLabel(req) ?? knownRoute(req) ?? UNMATCHED_ROUTE, status, typeof model === 'string' ? model : '');
    };
    res.once('finish', count);
    res.once('close', count);
    next();
  };
}

/** The pattern of the route that answered (`/v1/models/*model`), if one did. */
function routeLabel(req: Request): string | undefined {
  const route: unknown = req.route;
  if (typeof route !== 'object' || route === null) return undefined;
  const path: unknown = (route as { path?: unknown }).path;
  return typeof path === 'string' ? path : undefined;
}

/** The app's metrics, from a response of the app (undefined outside one). */
export function metricsOf(res: Response): ServerMetrics | undefined {
  const metrics: unknown = res.locals?.[METRICS_LOCAL];
  return metrics instanceof ServerMetrics ? metrics : undefined;
}

/** GET /metrics. */
export function metricsRoute(metrics: ServerMetrics, pool: ServedModels): RequestHandler {
  return (_req, res) => {
    res.set('Content-Type', METRICS_CONTENT_TYPE).set('Cache-Control', 'no-store').send(metrics.render(pool));
  };
}
