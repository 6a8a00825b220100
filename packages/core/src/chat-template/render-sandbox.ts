import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';

import { ChatTemplateError } from './chat-template-error.js';
import { renderWorkerMain, type WorkerLimits, type WorkerReply, type WorkerRequest } from './render-worker.js';
import { strftime } from './strftime.js';

/** Bounds on one render. Every field is optional; missing ones take the sandbox's defaults. */
export interface RenderLimits {
  /** Wall-clock time for one render, parsing included, in ms. */
  timeoutMs?: number;
  /** Longest output, and longest string built while rendering, in UTF-16 code units. */
  maxOutputChars?: number;
  /** Longest list a template may build, `range()` included. */
  maxItems?: number;
}

export const DEFAULT_RENDER_LIMITS: Readonly<Required<RenderLimits>> = Object.freeze({
  timeoutMs: 2000,
  maxOutputChars: 4 * 1024 * 1024,
  maxItems: 100_000,
});

export interface RenderSandboxOptions {
  /** Limits for renders that give none (defaults: `DEFAULT_RENDER_LIMITS`). */
  limits?: RenderLimits;
  /** The worker's V8 old-generation heap in MiB (`--max-old-space-size`). Default 64. */
  maxHeapMb?: number;
  /**
   * How long past `timeoutMs` to wait for the worker to stop a render itself before killing it
   * (it can only stop between template steps, not inside one long native call). Default 250.
   */
  killGraceMs?: number;
  /** Most worker processes, i.e. renders at once. Default `defaultRenderWorkers()`. */
  workers?: number;
}

/** One template to render (with `context`) or only to parse (without). */
export interface SandboxJob {
  /** Names the template in errors, e.g. `model.gguf (tokenizer.chat_template)`. */
  source: string;
  template: string;
  /** The template's variables; they are copied into the worker (structured clone). */
  context?: Record<string, unknown>;
  /** What `strftime_now()` takes as the current time (ms since the epoch); default now. */
  nowMs?: number;
  limits?: RenderLimits;
}

/** Time a new worker may take to start Node and load @huggingface/jinja on a busy machine. */
const STARTUP_TIMEOUT_MS = 10_000;
/** How much of the worker's stderr to keep for the error when it dies. */
const STDERR_TAIL_CHARS = 4096;

/**
 * Workers when none are asked for: two, so that one slow render never holds up the others,
 * and one per core beyond that up to four (each is a Node process of about 40 MB).
 */
export function defaultRenderWorkers(): number {
  return Math.min(4, Math.max(2, availableParallelism()));
}

interface Pending {
  request: WorkerRequest;
  source: string;
  timeoutMs: number;
  resolve(output: string): void;
  reject(error: ChatTemplateError): void;
}

/**
 * Renders chat templates in separate Node processes, because templates come from model
 * files. @huggingface/jinja cannot reach anything outside its own values, but it runs loops,
 * recursion and string building with no limit. In a worker process a render cannot block
 * the event loop, its heap is capped, and a watchdog can kill it.
 *
 * Why processes and not worker threads: a worker thread's `resourceLimits` do not contain
 * every out-of-memory. One filter call can allocate hundreds of MB in one native step
 * (`{{ messages | tojson(indent=100000000) }}`), and V8's fatal out-of-memory then aborts the
 * whole process, server included. A child process confines that to itself.
 *
 * - A small pool of workers (`workers`, default `defaultRenderWorkers()`), started as renders
 *   need them and reused; unreferenced while idle, so they never keep the process alive. Each
 *   exits when its parent does (its IPC channel closes).
 * - Each worker renders one job at a time; jobs wait in one queue for the first free worker.
 *   A slow or hostile render holds only its own worker, and each render's clock starts when
 *   it is sent to a worker, not when it was queued.
 * - A worker stops a render itself when its time or a size runs out (see `render-worker.ts`);
 *   if it does not answer `killGraceMs` later (stuck inside one native call), it is killed,
 *   the render rejects with a `timeout` error, and a fresh worker takes its place when
 *   needed. Likewise when a worker dies (out of memory).
 * - Workers get an empty environment and cannot compile code from strings.
 */
export class RenderSandbox {
  readonly #limits: Required<RenderLimits>;
  readonly #process: WorkerProcessOptions;
  readonly #maxWorkers: number;
  readonly #workers: RenderWorker[] = [];
  #queue: Pending[] = [];
  #nextId = 1;

  constructor(options: RenderSandboxOptions = {}) {
    this.#limits = resolveLimits(DEFAULT_RENDER_LIMITS, options.limits);
    this.#process = { maxHeapMb: options.maxHeapMb ?? 64, killGraceMs: options.killGraceMs ?? 250 };
    const workers = options.workers ?? defaultRenderWorkers();
    if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`workers must be a positive integer, got ${workers}`);
    this.#maxWorkers = workers;
  }

  /** The limits renders get when they give none. */
  get limits(): Readonly<Required<RenderLimits>> {
    return this.#limits;
  }

  /** Most renders that run at once (each in its own worker process). */
  get maxWorkers(): number {
    return this.#maxWorkers;
  }

  /** Renders (and parses) running now, one per busy worker. */
  get running(): number {
    return this.#workers.filter((worker) => worker.busy).length;
  }

  /** Renders `job.template` with `job.context`; rejects with a `ChatTemplateError`. */
  render(job: SandboxJob & { context: Record<string, unknown> }): Promise<string> {
    const limits = resolveLimits(this.#limits, job.limits);
    const nowMs = job.nowMs ?? Date.now();
    const request: WorkerRequest = { id: this.#nextId++, op: 'render', template: job.template, context: job.context, nowMs, limits };
    return this.#enqueue(request, job.source, limits);
  }

  /** Parses `job.template` without rendering it; rejects with an `invalid_template` error. */
  async check(job: Omit<SandboxJob, 'context' | 'nowMs'>): Promise<void> {
    const limits = resolveLimits(this.#limits, job.limits);
    await this.#enqueue({ id: this.#nextId++, op: 'parse', template: job.template, limits }, job.source, limits);
  }

  /** Stops the workers and rejects the renders not done. A later render starts new workers. */
  async close(): Promise<void> {
    const queued = this.#queue;
    this.#queue = [];
    const workers = this.#workers.splice(0);
    const closed = workers.map((worker) => worker.close());
    for (const job of queued) job.reject(new ChatTemplateError('render_error', job.source, 'the render sandbox was closed'));
    await Promise.all(closed);
  }

  #enqueue(request: WorkerRequest, source: string, limits: WorkerLimits): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.#queue.push({ request, source, timeoutMs: limits.timeoutMs, resolve, reject });
      this.#pump();
    });
  }

  /** Hands queued jobs to free workers, starting workers up to the pool's size. */
  #pump(): void {
    while (this.#queue.length > 0) {
      let worker = this.#workers.find((w) => !w.busy);
      if (!worker && this.#workers.length < this.#maxWorkers) {
        worker = new RenderWorker(this.#process, () => this.#pump());
        this.#workers.push(worker);
      }
      if (!worker) return;
      worker.run(this.#queue.shift()!);
    }
  }
}

interface WorkerProcessOptions {
  maxHeapMb: number;
  killGraceMs: number;
}

/**
 * One worker slot of the pool: a child process (started on first use, replaced after it is
 * killed or dies) and the one job it runs. `onFree` is called whenever the slot can take the
 * next job.
 */
class RenderWorker {
  #child: ChildProcess | undefined;
  #ready = false;
  #stderrTail = '';
  #active: Pending | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: WorkerProcessOptions,
    private readonly onFree: () => void,
  ) {}

  get busy(): boolean {
    return this.#active !== undefined;
  }

  run(job: Pending): void {
    const child = this.#child ?? this.#spawn();
    try {
      // Serializes the context now: a value that cannot be cloned (a function) throws here.
      // A worker that died meanwhile shows up as its 'exit' event.
      child.send(job.request, (error) => error && this.#onGone(child, error));
    } catch (error) {
      const detail = `the render input cannot be copied: ${messageOf(error)}`;
      job.reject(new ChatTemplateError('invalid_input', job.source, detail, { cause: error }));
      return; // still free: the pump hands it the next job
    }
    this.#active = job;
    // A render in flight keeps the process alive until it settles; an idle worker does not.
    setReferenced(child, true);
    this.#arm(job);
  }

  /** Kills the process and rejects the job in flight. */
  async close(): Promise<void> {
    const child = this.#discard();
    const job = this.#active;
    this.#clearActive();
    job?.reject(new ChatTemplateError('render_error', job.source, 'the render sandbox was closed'));
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  }

  /** (Re)starts the watchdog of the running job: startup time first, then render time. */
  #arm(job: Pending): void {
    clearTimeout(this.#timer);
    const waitMs = this.#ready ? job.timeoutMs + this.options.killGraceMs : STARTUP_TIMEOUT_MS;
    this.#timer = setTimeout(() => this.#onTimeout(job), waitMs);
  }

  #spawn(): ChildProcess {
    const args = [`--max-old-space-size=${this.options.maxHeapMb}`, '--disallow-code-generation-from-strings', '-e', workerSource()];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      // Structured clone over IPC (not JSON): undefined values survive, as the template expects.
      serialization: 'advanced',
      // Nothing of the parent's environment goes in (NODE_OPTIONS included): the template
      // cannot reach it anyway, and there is no reason to hand it over.
      env: {},
      windowsHide: true,
    });
    this.#stderrTail = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (child === this.#child) this.#stderrTail = (this.#stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
    });
    child.on('message', (reply: WorkerReply) => this.#onMessage(child, reply));
    child.on('error', (error: Error) => this.#onGone(child, error));
    child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => this.#onGone(child, undefined, code, signal));
    setReferenced(child, false);
    this.#child = child;
    this.#ready = false;
    return child;
  }

  #onMessage(child: ChildProcess, reply: WorkerReply): void {
    if (child !== this.#child) return; // a worker already given up on
    if ('ready' in reply) {
      this.#ready = true;
      if (this.#active) this.#arm(this.#active);
      return;
    }
    const job = this.#active;
    if (!job || reply.id !== job.request.id) return;
    this.#clearActive();
    if (reply.ok) job.resolve(reply.output);
    else job.reject(new ChatTemplateError(reply.kind, job.source, reply.message));
    this.onFree();
  }

  #onGone(child: ChildProcess, error?: Error, code?: number | null, signal?: NodeJS.Signals | null): void {
    if (child !== this.#child) return;
    const stderr = this.#stderrTail;
    this.#discard();
    child.kill('SIGKILL'); // in case only its channel failed
    const job = this.#active;
    if (job) {
      this.#clearActive();
      if (/heap out of memory|Reached heap limit/i.test(stderr)) {
        const detail = `rendering ran out of memory (limit ${this.options.maxHeapMb} MiB); the render worker was stopped`;
        job.reject(new ChatTemplateError('out_of_memory', job.source, detail, { cause: error }));
      } else {
        const how = error ? `failed: ${error.message}` : `exited (${signal ?? `code ${code}`})`;
        const lastLine = stderr.trim().split('\n').at(-1);
        const detail = `the render worker ${how}${lastLine ? `: ${lastLine}` : ''}`;
        job.reject(new ChatTemplateError('render_error', job.source, detail, { cause: error }));
      }
    }
    this.onFree();
  }

  #onTimeout(job: Pending): void {
    if (this.#active !== job) return;
    const started = this.#ready;
    this.#discard()?.kill('SIGKILL');
    this.#clearActive();
    const detail = started
      ? `rendering took longer than ${job.timeoutMs} ms; the render worker was stopped`
      : `the render worker did not start within ${STARTUP_TIMEOUT_MS} ms`;
    job.reject(new ChatTemplateError('timeout', job.source, detail));
    this.onFree();
  }

  #clearActive(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#active = undefined;
    if (this.#child) setReferenced(this.#child, false);
  }

  /** Forgets the current process (its late events are ignored) and returns it. */
  #discard(): ChildProcess | undefined {
    const child = this.#child;
    this.#child = undefined;
    this.#ready = false;
    if (child) setReferenced(child, false);
    return child;
  }
}

let defaultSandbox: RenderSandbox | undefined;

/** The process-wide sandbox that templates use unless given their own. */
export function defaultRenderSandbox(): RenderSandbox {
  defaultSandbox ??= new RenderSandbox();
  return defaultSandbox;
}

/** Whether the worker (process, IPC channel and stderr pipe) keeps the event loop alive. */
function setReferenced(worker: ChildProcess, referenced: boolean): void {
  const handles = [worker, worker.channel, worker.stderr] as Array<{ ref?(): unknown; unref?(): unknown } | null | undefined>;
  for (const handle of handles) {
    if (referenced) handle?.ref?.();
    else handle?.unref?.();
  }
}

function resolveLimits(base: Readonly<Required<RenderLimits>>, override: RenderLimits | undefined): Required<RenderLimits> {
  const limits = { ...base };
  for (const key of ['timeoutMs', 'maxOutputChars', 'maxItems'] as const) {
    const value = override?.[key];
    if (value === undefined) continue;
    if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`render limit ${key} must be a positive number, got ${value}`);
    limits[key] = value;
  }
  return limits;
}

let cachedWorkerSource: string | undefined;

/**
 * The worker's program (run with `node -e`), built from the source text of self-contained
 * functions: Node cannot load the TypeScript sources that jest runs, and this way needs no
 * extra file in `dist/` either. @huggingface/jinja is resolved from this module, so the worker
 * loads the same copy as the package.
 */
function workerSource(): string {
  cachedWorkerSource ??= [
    `'use strict';`,
    `const jinja = require(${JSON.stringify(createRequire(import.meta.url).resolve('@huggingface/jinja'))});`,
    `const strftime = ${strftime.toString()};`,
    // When the parent goes, so does the worker.
    `process.on('disconnect', () => process.exit(0));`,
    `const port = { onRequest: (handler) => process.on('message', handler), reply: (message) => process.send(message) };`,
    `(${renderWorkerMain.toString()})(jinja, port, strftime);`,
  ].join('\n');
  return cachedWorkerSource;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
