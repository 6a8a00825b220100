/**
 * Many models behind one server: id → engine, each with its own scheduler and KV cache (an
 * `Engine` owns both), its load settings and its status. Requests are routed by their `model`;
 * models are loaded, unloaded and reloaded at run time (routes/model-management.ts), within a
 * memory limit the pool states.
 *
 *   unloaded ──load──▶ loading ──▶ loaded ──unload──▶ unloading ──▶ unloaded
 *                                    └─────reload──▶ reloading ──▶ loaded
 *
 * Unloading (and reloading) waits for the requests already routed to the model: new ones are
 * refused at once, those in flight finish with their answers, then the engine is closed.
 *
 * The pool does not know how a model is found or loaded: `load(settings)` is injected (the
 * CLI resolves paths, registry and hub ids and calls `Engine.load`), so is `estimateBytes`.
 */
import { formatBytes } from '@mistralrs/core';

import { ApiError } from './errors.js';
import { defaultMemoryLimitBytes, engineFootprintBytes } from './model-footprint.js';
import type { ServedModel } from './serving-engine.js';

export type ModelStatus = 'loaded' | 'unloaded' | 'loading' | 'unloading' | 'reloading';

/** A model the pool may close when it is unloaded. */
export type PoolEngine = ServedModel & { close(): void | Promise<void> };

/** One model of the pool: the id requests name, and what `load` needs to bring it up. */
export interface PoolModel<S> {
  id: string;
  settings: S;
}

export interface ModelPoolOptions<S> {
  /** In order; the first is the default model unless `defaultModel` names another. */
  models: readonly PoolModel<S>[];
  /** Brings a model up; rejects with an error whose message says why it could not. */
  load: (settings: S, id: string) => Promise<PoolEngine>;
  /**
   * Bytes the model is expected to take before it loads (weights on disk, the KV cache when
   * its size is given in bytes), or undefined when not known. After the load the pool measures
   * the engine instead (`footprintBytes`).
   */
  estimateBytes?: (settings: S, id: string) => Promise<number | undefined>;
  /** The sum of the loaded models' footprints may not exceed it; default `defaultMemoryLimitBytes()`. */
  maxMemoryBytes?: number;
  /** The id `default` and a request without `model` mean. */
  defaultModel?: string;
  /** What a loaded engine takes; default `engineFootprintBytes` (weights + KV cache). */
  footprintBytes?: (engine: ServedModel) => number;
}

/** What `GET /v1/models` and the management routes tell of a model. */
export interface ModelState {
  id: string;
  status: ModelStatus;
  /** Bytes the loaded model takes (weights + KV cache); null while it is not loaded. */
  memoryBytes: number | null;
  /** Requests routed to it and not yet answered. */
  inFlight: number;
  /** Why its last load failed or was refused, until it loads. */
  error?: string;
}

export interface MemoryState {
  limitBytes: number;
  /** Loaded models' footprints, plus the estimates of those loading. */
  usedBytes: number;
}

/** A request's hold on a loaded model: the model is not unloaded until it is released. */
export interface ModelLease {
  readonly modelId: string;
  readonly engine: ServedModel;
  /** Idempotent. */
  release(): void;
}

/** The name a request may give instead of the default model's id. */
export const DEFAULT_MODEL_ALIAS = 'default';

interface Entry<S> {
  readonly id: string;
  readonly settings: S;
  /** An engine given ready-made (`ModelPool.of`): never loaded, unloaded or closed here. */
  fixed: boolean;
  engine: ServedModel | undefined;
  status: ModelStatus;
  memoryBytes: number | undefined;
  /** While loading: the estimate, counted against the limit. */
  reservedBytes: number;
  inFlight: number;
  /** Called when `inFlight` drops to 0. */
  drained: Array<() => void>;
  /** The load or unload under way. */
  operation: Promise<void> | undefined;
  error: string | undefined;
}

/** What the server uses of a pool (free of its settings' type). */
export interface ServedModels {
  readonly ids: string[];
  readonly defaultId: string;
  readonly maxMemoryBytes: number;
  list(): ModelState[];
  state(requested: string): ModelState;
  memory(): MemoryState;
  acquire(requested: string | undefined): ModelLease;
  load(requested: string): Promise<ModelState>;
  unload(requested: string): Promise<ModelState>;
  reload(requested: string): Promise<ModelState>;
}

export class ModelPool<S = unknown> implements ServedModels {
  readonly #entries = new Map<string, Entry<S>>();
  readonly #load: (settings: S, id: string) => Promise<PoolEngine>;
  readonly #estimate: ModelPoolOptions<S>['estimateBytes'];
  readonly #footprint: (engine: ServedModel) => number;
  readonly maxMemoryBytes: number;
  readonly defaultId: string;

  /** Every model starts unloaded; `load` them (the CLI loads those its config says to). */
  constructor(options: ModelPoolOptions<S>) {
    this.#load = options.load;
    this.#estimate = options.estimateBytes;
    this.#footprint = options.footprintBytes ?? engineFootprintBytes;
    this.maxMemoryBytes = options.maxMemoryBytes ?? defaultMemoryLimitBytes();
    if (!(this.maxMemoryBytes > 0)) throw new RangeError(`maxMemoryBytes must be positive, got ${this.maxMemoryBytes}`);
    for (const model of options.models) this.#add(model.id, model.settings);
    this.defaultId = this.#defaultId(options.defaultModel);
  }

  /** One engine, already loaded, served as `modelId` (the single-model server). It is never
   * closed by the pool, and cannot be unloaded or reloaded: it stays the caller's. */
  static of(engine: ServedModel, modelId: string): ModelPool<never> {
    const pool = new ModelPool<never>({
      models: [{ id: modelId, settings: undefined as never }],
      load: () => Promise.reject(new Error('a fixed engine is not loaded by the pool')),
    });
    const entry = pool.#entries.get(modelId)!;
    entry.fixed = true;
    entry.engine = engine;
    entry.status = 'loaded';
    entry.memoryBytes = pool.#footprint(engine);
    return pool;
  }

  #add(id: string, settings: S): void {
    if (id === '' || this.#entries.has(id))
      throw new RangeError(id === '' ? 'a model id may not be empty' : `two models are named ${JSON.stringify(id)}`);
    this.#entries.set(id, {
      id,
      settings,
      fixed: false,
      engine: undefined,
      status: 'unloaded',
      memoryBytes: undefined,
      reservedBytes: 0,
      inFlight: 0,
      drained: [],
      operation: undefined,
      error: undefined,
    });
  }

  #defaultId(requested: string | undefined): string {
    const first = this.#entries.keys().next().value;
    if (first === undefined) throw new RangeError('a model pool needs at least one model');
    if (requested === undefined) return first;
    if (!this.#entries.has(requested))
      throw new RangeError(`the default model ${JSON.stringify(requested)} is not one of ${this.#idList()}`);
    return requested;
  }

  /** The ids, in order. */
  get ids(): string[] {
    return [...this.#entries.keys()];
  }

  /** Every model's state, in order. */
  list(): ModelState[] {
    return [...this.#entries.values()].map(stateOf);
  }

  /** The state of `requested` (an id or `default`); 404 `model_not_found` for any other name. */
  state(requested: string): ModelState {
    return stateOf(this.#entry(requested));
  }

  memory(): MemoryState {
    return { limitBytes: this.maxMemoryBytes, usedBytes: this.#usedBytes(undefined) };
  }

  /**
   * Routes a request: `requested` is its `model` (an id, `default`, or undefined for the
   * default). Throws 404 `model_not_found` (listing the ids) for an unknown name, 400
   * `model_not_loaded` for a model that is not loaded, 503 `model_loading` while it loads.
   */
  acquire(requested: string | undefined): ModelLease {
    const entry = this.#entry(requested ?? DEFAULT_MODEL_ALIAS);
    if (entry.status !== 'loaded' || !entry.engine) throw notServing(entry);
    entry.inFlight++;
    let released = false;
    return {
      modelId: entry.id,
      engine: entry.engine,
      release: () => {
        if (released) return;
        released = true;
        if (--entry.inFlight === 0) for (const resolve of entry.drained.splice(0)) resolve();
      },
    };
  }

  /**
   * Loads a model that is not loaded (a no-op when it is; joins a load under way). Refuses
   * with 507 `memory_limit_exceeded` a model whose estimate, then whose measured footprint,
   * would take the loaded models past the limit; 500 `model_load_failed` when `load` fails.
   */
  async load(requested: string): Promise<ModelState> {
    const entry = this.#manageable(requested);
    if (entry.status === 'loading' && entry.operation) await entry.operation;
    else if (entry.status === 'unloaded') await this.#run(entry, () => this.#bringUp(entry, 'loading'));
    else if (entry.status !== 'loaded') throw busy(entry, 'load');
    return stateOf(entry);
  }

  /** Unloads a model once the requests routed to it have been answered (new ones are refused
   * meanwhile); a no-op when it is not loaded. */
  async unload(requested: string): Promise<ModelState> {
    const entry = this.#manageable(requested);
    if (entry.status === 'unloading' && entry.operation) await entry.operation;
    else if (entry.status === 'loaded') await this.#run(entry, () => this.#takeDown(entry, 'unloading'));
    else if (entry.status !== 'unloaded') throw busy(entry, 'unload');
    return stateOf(entry);
  }

  /** Unloads (after the requests in flight) and loads again, from its settings as given. */
  async reload(requested: string): Promise<ModelState> {
    const entry = this.#manageable(requested);
    if (entry.status === 'unloaded') return this.load(requested);
    if (entry.status !== 'loaded') throw busy(entry, 'reload');
    await this.#run(entry, async () => {
      await this.#takeDown(entry, 'reloading');
      await this.#bringUp(entry, 'reloading');
    });
    return stateOf(entry);
  }

  /** Closes every engine the pool loaded (each finishes what it has queued first). */
  close(): void {
    for (const entry of this.#entries.values()) {
      if (entry.fixed) continue;
      (entry.engine as PoolEngine | undefined)?.close();
      entry.engine = undefined;
      entry.memoryBytes = undefined;
      entry.status = 'unloaded';
    }
  }

  async #run(entry: Entry<S>, operation: () => Promise<void>): Promise<void> {
    entry.operation = operation();
    try {
      await entry.operation;
    } finally {
      entry.operation = undefined;
    }
  }

  async #bringUp(entry: Entry<S>, status: 'loading' | 'reloading'): Promise<void> {
    entry.status = status;
    entry.error = undefined;
    try {
      const estimate = await this.#estimateOf(entry);
      this.#checkMemory(entry, estimate, 'estimated');
      entry.reservedBytes = estimate;
      let engine: PoolEngine;
      try {
        engine = await this.#load(entry.settings, entry.id);
      } catch (error) {
        throw new ApiError(
          500,
          'server_error',
          `the model ${JSON.stringify(entry.id)} failed to load: ${messageOf(error)}`,
          'model',
          'model_load_failed',
        );
      }
      entry.reservedBytes = 0;
      const measured = this.#footprint(engine);
      try {
        this.#checkMemory(entry, measured, 'measured');
      } catch (error) {
        engine.close();
        throw error;
      }
      entry.engine = engine;
      entry.memoryBytes = measured;
      entry.status = 'loaded';
    } catch (error) {
      entry.status = 'unloaded';
      entry.reservedBytes = 0;
      entry.error = messageOf(error);
      throw error;
    }
  }

  async #takeDown(entry: Entry<S>, status: 'unloading' | 'reloading'): Promise<void> {
    entry.status = status;
    if (entry.inFlight > 0) await new Promise<void>((resolve) => entry.drained.push(resolve));
    (entry.engine as PoolEngine | undefined)?.close();
    entry.engine = undefined;
    entry.memoryBytes = undefined;
    entry.status = 'unloaded';
  }

  async #estimateOf(entry: Entry<S>): Promise<number> {
    if (!this.#estimate) return 0;
    try {
      return (await this.#estimate(entry.settings, entry.id)) ?? 0;
    } catch {
      // Not knowable up front (a hub id not yet downloaded): the load finds out, then measures.
      return 0;
    }
  }

  /** 507 unless `bytes` more fit beside every other model loaded or loading. */
  #checkMemory(entry: Entry<S>, bytes: number, how: 'estimated' | 'measured'): void {
    const used = this.#usedBytes(entry);
    if (used + bytes <= this.maxMemoryBytes) return;
    const others = [...this.#entries.values()].filter((e) => e !== entry && (e.memoryBytes !== undefined || e.reservedBytes > 0));
    const loaded = others.length
      ? others
          .map((e) => `${e.id} ${formatBytes(e.memoryBytes ?? e.reservedBytes)}${e.memoryBytes === undefined ? ' (loading)' : ''}`)
          .join(', ')
      : 'nothing';
    throw new ApiError(
      507,
      'server_error',
      `cannot load the model ${JSON.stringify(entry.id)}: it takes ${formatBytes(bytes)} (${how}: weights and KV cache), ` +
        `and the server's memory limit is ${formatBytes(this.maxMemoryBytes)}, of which ${formatBytes(used)} is in use ` +
        `(loaded: ${loaded}); unload a model first, or raise the limit (--max-memory)`,
      'model',
      'memory_limit_exceeded',
    );
  }

  #usedBytes(except: Entry<S> | undefined): number {
    let sum = 0;
    for (const e of this.#entries.values()) if (e !== except) sum += (e.memoryBytes ?? 0) + e.reservedBytes;
    return sum;
  }

  #entry(requested: string): Entry<S> {
    const id = requested === DEFAULT_MODEL_ALIAS && !this.#entries.has(requested) ? this.defaultId : requested;
    const entry = this.#entries.get(id);
    if (entry) return entry;
    throw new ApiError(
      404,
      'invalid_request_error',
      `the model ${JSON.stringify(requested)} does not exist; this server serves ${this.#idList()}`,
      'model',
      'model_not_found',
    );
  }

  #manageable(requested: string): Entry<S> {
    const entry = this.#entry(requested);
    if (entry.fixed) {
      throw new ApiError(
        400,
        'invalid_request_error',
        `the model ${JSON.stringify(entry.id)} was given to the server loaded; it cannot be loaded, unloaded or reloaded over HTTP`,
        'model',
        'model_not_manageable',
      );
    }
    return entry;
  }

  #idList(): string {
    return this.ids.map((id) => JSON.stringify(id)).join(', ');
  }
}

function stateOf(entry: Entry<unknown>): ModelState {
  return {
    id: entry.id,
    status: entry.status,
    memoryBytes: entry.memoryBytes ?? null,
    inFlight: entry.inFlight,
    ...(entry.error !== undefined ? { error: entry.error } : {}),
  };
}

/** Why a listed model cannot take a request now. */
function notServing(entry: Entry<unknown>): ApiError {
  const id = JSON.stringify(entry.id);
  if (entry.status === 'loading' || entry.status === 'reloading') {
    return new ApiError(503, 'service_unavailable', `the model ${id} is ${entry.status}; try again shortly`, 'model', 'model_loading', {
      'Retry-After': '1',
    });
  }
  // Not retried by clients (a 4xx): it stays so until someone loads it.
  const how = `load it with POST /v1/models/load {"model": ${id}}`;
  const state = entry.status === 'unloading' ? 'is being unloaded' : 'is not loaded';
  return new ApiError(400, 'invalid_request_error', `the model ${id} ${state}; ${how}`, 'model', 'model_not_loaded');
}

function busy(entry: Entry<unknown>, action: string): ApiError {
  return new ApiError(
    409,
    'invalid_request_error',
    `cannot ${action} the model ${JSON.stringify(entry.id)} while it is ${entry.status}; try again when that is done`,
    'model',
    'model_busy',
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
