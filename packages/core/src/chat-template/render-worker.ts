/**
 * The program of the render worker (a child process, see `render-sandbox.ts`), and the
 * messages it exchanges with `RenderSandbox`.
 *
 * `renderWorkerMain` must stay self-contained: it may use its parameters, globals
 * (`performance`, `Error`, ...) and types, but nothing else from this module or its imports.
 * The sandbox builds the worker's program from its source text, so the same code runs under
 * jest (where sources are TypeScript, which Node cannot load) and from `dist/`; a bundler that
 * rewrites it with helpers from outside the function would break it.
 */
import type { ChatTemplateErrorKind } from './chat-template-error.js';

export interface WorkerLimits {
  timeoutMs: number;
  maxOutputChars: number;
  /** Longest list a template may build, `range()` included. */
  maxItems: number;
}

export type WorkerRequest =
  | { id: number; op: 'parse'; template: string; limits: WorkerLimits }
  | {
      id: number;
      op: 'render';
      template: string;
      /** The template's variables: messages, tools, add_generation_prompt, bos_token, ... */
      context: Record<string, unknown>;
      /** What `strftime_now()` calls the current time, in ms since the epoch. */
      nowMs: number;
      limits: WorkerLimits;
    };

export type WorkerReply =
  | { ready: true }
  | { id: number; ok: true; output: string }
  | { id: number; ok: false; kind: ChatTemplateErrorKind; message: string };

/**
 * The parts of @huggingface/jinja the worker uses. Declared here because the package's own
 * declarations import `./runtime` without an extension, which NodeNext resolution cannot
 * follow, so its `Interpreter` and `Environment` would type as `any`.
 */
export interface JinjaValue {
  type: string;
  value: unknown;
}
export interface JinjaEnvironment {
  set(name: string, value: unknown): JinjaValue;
}
export interface JinjaInterpreter {
  run(program: JinjaProgram): JinjaValue;
  evaluate(node: unknown, environment: JinjaEnvironment): JinjaValue;
}
/** A parsed template (an AST the worker only hands back to the interpreter). */
export interface JinjaProgram {
  type: 'Program';
}
export interface JinjaModule {
  Environment: new () => JinjaEnvironment;
  Interpreter: new (env: JinjaEnvironment) => JinjaInterpreter;
  tokenize(source: string, options: { lstrip_blocks: boolean; trim_blocks: boolean }): unknown[];
  parse(tokens: unknown[]): JinjaProgram;
}

type Strftime = (date: Date, format: string) => string;

/** How the worker talks to the sandbox (over the IPC channel of the child process). */
export interface WorkerPort {
  onRequest(handler: (request: WorkerRequest) => void): void;
  reply(message: WorkerReply): void;
}

/** Serves `WorkerRequest`s on `port`, one at a time, until the worker is stopped. */
export function renderWorkerMain(jinja: JinjaModule, port: WorkerPort, strftime: Strftime): void {
  type Program = JinjaProgram;
  type Environment = JinjaEnvironment;
  type Value = JinjaValue;

  /** Thrown by the template's `raise_exception(msg)`. */
  class TemplateRaised extends Error {}

  class LimitError extends Error {
    readonly kind: 'timeout' | 'too_large';
    constructor(kind: 'timeout' | 'too_large', message: string) {
      super(message);
      this.kind = kind;
    }
  }

  // `evaluateBlock` is private in jinja's typings, but it is what runs once per loop
  // iteration, even of an empty body; `evaluate` alone would miss a loop that evaluates nothing.
  const baseEvaluateBlock = (jinja.Interpreter.prototype as unknown as Record<string, unknown>).evaluateBlock;

  /**
   * The interpreter with budgets. `evaluate` (every node of the template) and `evaluateBlock`
   * (every loop iteration) are the hooks @huggingface/jinja offers: checking the clock every
   * 16 of them stops runaway loops cleanly (the worker survives), and checking each value
   * stops a string or list from doubling its way to gigabytes. The sandbox's watchdog remains
   * the backstop for work inside one native call (a regex, a huge join).
   */
  class BoundedInterpreter extends jinja.Interpreter {
    #steps = 0;
    readonly #deadline: number;
    readonly #limits: WorkerLimits;

    constructor(env: Environment, limits: WorkerLimits, deadline: number) {
      super(env);
      this.#limits = limits;
      this.#deadline = deadline;
    }

    #tick(): void {
      if ((++this.#steps & 15) === 0 && performance.now() > this.#deadline) {
        throw new LimitError('timeout', `rendering took longer than ${this.#limits.timeoutMs} ms`);
      }
    }

    override evaluate(node: unknown, environment: Environment): Value {
      this.#tick();
      const value = super.evaluate(node, environment);
      const inner: unknown = value.value;
      if (typeof inner === 'string' && inner.length > this.#limits.maxOutputChars) {
        const limit = this.#limits.maxOutputChars;
        throw new LimitError('too_large', `the template built a string of ${inner.length} characters (limit ${limit})`);
      }
      if (Array.isArray(inner) && inner.length > this.#limits.maxItems) {
        throw new LimitError('too_large', `the template built a list of ${inner.length} items (limit ${this.#limits.maxItems})`);
      }
      return value;
    }

    evaluateBlock(...args: unknown[]): unknown {
      this.#tick();
      return (baseEvaluateBlock as (...args: unknown[]) => unknown).apply(this, args);
    }
  }

  /** Python's `range`, refusing a size over the limit before allocating anything. */
  function checkedRange(args: unknown[], maxItems: number): number[] {
    if (args.length < 1 || args.length > 3 || !args.every((arg) => Number.isInteger(arg))) {
      throw new TypeError('range() takes 1 to 3 integer arguments');
    }
    const [start, stop, step] = (args.length === 1 ? [0, args[0], 1] : [args[0], args[1], args[2] ?? 1]) as [number, number, number];
    if (step === 0) throw new Error('range() arg 3 must not be zero');
    const length = Math.max(0, Math.ceil((stop - start) / step));
    if (length > maxItems) throw new LimitError('too_large', `range() of ${length} items exceeds the limit of ${maxItems}`);
    return Array.from({ length }, (_, i) => start + i * step);
  }

  /**
   * A fresh scope per render with our own globals rather than jinja's `setupGlobals`: its
   * `range` has no size limit and its `strftime_now` few codes. Only data and these plain
   * functions are reachable from a template; never pass a general-purpose object or function
   * (a JavaScript function in the context becomes callable from the template).
   */
  function makeEnvironment(context: Record<string, unknown>, nowMs: number, limits: WorkerLimits): Environment {
    const env = new jinja.Environment();
    const globals: Record<string, unknown> = {
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
      raise_exception: (message?: unknown) => {
        throw new TemplateRaised(String(message ?? ''));
      },
      range: (...args: unknown[]) => checkedRange(args, limits.maxItems),
      strftime_now: (format?: unknown) => strftime(new Date(nowMs), String(format ?? '')),
    };
    for (const [name, value] of Object.entries(globals)) env.set(name, value);
    for (const [name, value] of Object.entries(context)) env.set(name, value);
    return env;
  }

  // Parsed templates by source text: a model's template is parsed once per worker.
  const programs = new Map<string, Program>();
  function compile(template: string): Program {
    const cached = programs.get(template);
    if (cached) return cached;
    // The options transformers uses: HF templates are written for them.
    const program = jinja.parse(jinja.tokenize(template, { lstrip_blocks: true, trim_blocks: true }));
    if (programs.size >= 16) programs.delete(programs.keys().next().value as string);
    programs.set(template, program);
    return program;
  }

  const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

  function failure(id: number, error: unknown): WorkerReply {
    if (error instanceof TemplateRaised) return { id, ok: false, kind: 'raise_exception', message: error.message };
    if (error instanceof LimitError) return { id, ok: false, kind: error.kind, message: error.message };
    const message = messageOf(error);
    if (error instanceof RangeError && /call stack/i.test(message)) {
      return { id, ok: false, kind: 'render_error', message: 'recursion too deep (maximum call stack size exceeded)' };
    }
    if (error instanceof RangeError && /Invalid (string|array) length/i.test(message)) {
      return { id, ok: false, kind: 'too_large', message: `the template built a value too large for memory (${message})` };
    }
    return { id, ok: false, kind: 'render_error', message };
  }

  function handle(request: WorkerRequest): WorkerReply {
    const started = performance.now();
    const { id, limits } = request;
    let program: Program;
    try {
      program = compile(request.template);
    } catch (error) {
      return { id, ok: false, kind: 'invalid_template', message: `syntax error: ${messageOf(error)}` };
    }
    if (request.op === 'parse') return { id, ok: true, output: '' };

    let env: Environment;
    try {
      env = makeEnvironment(request.context, request.nowMs, limits);
    } catch (error) {
      return { id, ok: false, kind: 'invalid_input', message: messageOf(error) };
    }
    try {
      const result = new BoundedInterpreter(env, limits, started + limits.timeoutMs).run(program);
      const output = typeof result.value === 'string' ? result.value : String(result.value);
      if (output.length > limits.maxOutputChars) {
        return { id, ok: false, kind: 'too_large', message: `the output has ${output.length} characters (limit ${limits.maxOutputChars})` };
      }
      return { id, ok: true, output };
    } catch (error) {
      return failure(id, error);
    }
  }

  port.onRequest((request) => port.reply(handle(request)));
  port.reply({ ready: true });
}
