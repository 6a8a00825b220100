/**
 * Runs the choices of one request on the engine and writes the response, whole or streamed.
 * Chat and text completions differ only in the objects they write (`ResponseFormat`).
 *
 * Every generation gets the request's AbortSignal: a client that disconnects, whether still
 * queued or mid-stream, cancels its sequences and frees their KV blocks. The same signal stops
 * the other choices when one of them fails.
 */
import type { Response } from 'express';

import type { FinishReason, GenerationChunk, GenerationOptions, GenerationResult } from '@mistralrs/core';

import { grammarFailure } from './constraints.js';
import { shuttingDown, toApiError, type ApiError } from './errors.js';
import type { LogprobEntry } from './logprobs.js';
import { metricsOf, type ObservableGeneration } from './metrics.js';
import type { CommonRequest } from './validate.js';
import type { ServingEngine } from './serving-engine.js';
import { SseStream } from './sse.js';

/** One choice to generate. */
export interface ChoiceJob {
  /** Its index in `choices`. */
  index: number;
  promptIds: number[];
  options: GenerationOptions;
}

/** A finished choice, for the non-streamed response. */
export interface ChoiceOutcome {
  index: number;
  text: string;
  /** The generated tokens, as the chunks carried them (reasoning.ts decodes gpt-oss's markers from them). */
  tokenIds: number[];
  finishReason: OpenAiFinishReason;
  /** One entry per generated token, when logprobs were asked for. */
  logprobs: LogprobEntry[];
}

export type OpenAiFinishReason = 'stop' | 'length' | 'tool_calls';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** What differs between endpoints: the objects written. Choice objects are plain JSON. */
export interface ResponseFormat {
  object: string;
  chunkObject: string;
  /** The first chunk's choices (chat: the assistant's role), or undefined for none. */
  openingChoices(indexes: readonly number[]): object[] | undefined;
  /** A chunk's choice; undefined when it has nothing to show. `textOffset`: characters so far. */
  deltaChoice(index: number, chunk: GenerationChunk, textOffset: number): object | undefined;
  /** The choice's last chunks (tool calls read from its output, then the finish reason). */
  finalChoices(index: number, finishReason: OpenAiFinishReason): object[];
  wholeChoice(outcome: ChoiceOutcome): object;
}

export interface RunChoicesOptions {
  engine: ServingEngine;
  res: Response;
  /** `chatcmpl-…` or `cmpl-…`; also sent as the `x-request-id` header. */
  id: string;
  modelId: string;
  jobs: readonly ChoiceJob[];
  /** Prompt tokens of the request, each distinct prompt counted once. */
  promptTokens: number;
  stream: boolean;
  includeUsage: boolean;
  format: ResponseFormat;
  watch: ClientWatch;
}

/** What happened, for logs and tests. */
export interface RunSummary {
  id: string;
  /** The engine's finish reasons per choice (`cancelled` when the client went away). */
  finishReasons: FinishReason[];
  usage: Usage;
  /** The client disconnected before the response was complete. */
  clientGone: boolean;
}

/**
 * Follows the client's connection from the moment a request is accepted, so a client that
 * leaves while its prompt is still being rendered or queued cancels it too. Also carries the
 * server's shutdown signal (set in `res.locals` by the app; see `drainedError`).
 */
export class ClientWatch {
  readonly #controller = new AbortController();
  #clientGone = false;
  /** Aborted when a draining server's time is up: the request must end now, with an error. */
  readonly shutdown: AbortSignal | undefined;

  constructor(res: Response) {
    const shutdown: unknown = res.locals?.[SHUTDOWN_LOCAL];
    this.shutdown = shutdown instanceof AbortSignal ? shutdown : undefined;
    res.on('close', () => {
      // 'close' also follows a complete response; only an early one means the client left.
      if (res.writableFinished) return;
      this.#clientGone = true;
      this.#controller.abort();
    });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get clientGone(): boolean {
    return this.#clientGone;
  }

  /** Stops the request's generations (one choice failed; the others are of no use). */
  abort(): void {
    this.#controller.abort();
  }
}

/** Where the app puts its shutdown signal for `ClientWatch` (`res.locals[SHUTDOWN_LOCAL]`). */
export const SHUTDOWN_LOCAL = 'mistralrsShutdown';

/** What a request still running when the drain time is up ends with (status 503). */
export function drainedError(): ApiError {
  return shuttingDown('the server is shutting down, and its drain time ran out before this request finished');
}

/** The jobs of a request: `n` choices per prompt, numbered prompt by prompt; choice i seeded seed + i. */
export function choiceJobs(
  prompts: readonly number[][],
  request: CommonRequest,
  extra: Pick<GenerationOptions, 'logprobs' | 'topLogprobs' | 'grammar'>,
): ChoiceJob[] {
  const { sampling, n, maxTokens, stop } = request;
  return prompts.flatMap((promptIds, p) =>
    Array.from({ length: n }, (_, i) => {
      const index = p * n + i;
      const options: GenerationOptions = { ...sampling, ...extra };
      if (sampling.seed !== undefined) options.seed = sampling.seed + index;
      if (maxTokens !== undefined) options.maxTokens = maxTokens;
      if (stop !== undefined) options.stop = stop;
      return { index, promptIds, options };
    }),
  );
}

export async function runChoices(o: RunChoicesOptions): Promise<RunSummary> {
  o.res.set('x-request-id', o.id);
  const created = Math.floor(Date.now() / 1000);
  // OpenAI's key order: id, object, created, model, choices, usage.
  const head = (object: string) => ({ id: o.id, object, created, model: o.modelId });
  const sse = o.stream ? new SseStream(o.res) : undefined;
  if (o.watch.clientGone) return cancelledSummary(o); // left while the prompt was being prepared
  const { shutdown } = o.watch;
  // Prepared after the drain time ran out: it never starts.
  if (shutdown?.aborted) throw drainedError();
  // When it runs out mid-generation, the sequences are cancelled and end with the error.
  const stop = () => o.watch.abort();
  shutdown?.addEventListener('abort', stop, { once: true });
  try {
    const metrics = metricsOf(o.res);
    const generations = o.jobs.map((job) => {
      const submittedAt = performance.now();
      const generation = o.engine.complete({ ...job.options, prompt: job.promptIds, signal: o.watch.signal });
      return { job, generation: metrics ? metrics.observeGeneration(o.modelId, generation, submittedAt) : generation };
    });
    const results = sse ? await streamChoices(o, sse, generations, head) : await sendWhole(o, generations, head);
    metrics?.recordPromptTokens(o.modelId, o.promptTokens);
    return {
      id: o.id,
      finishReasons: results.map((r) => r.finishReason),
      usage: usage(o.promptTokens, results),
      clientGone: o.watch.clientGone,
    };
  } catch (error) {
    o.watch.abort(); // stop the other choices
    // Whatever failed, nobody is left to tell; an engine that rejects cancelled work lands here.
    if (o.watch.clientGone) return cancelledSummary(o);
    const apiError = grammarFailure(error, o.jobs[0]?.options.grammar) ?? toApiError(error);
    // After the headers, an error can only be a last event (the express error handler logs it).
    if (sse?.started) await sse.error(apiError);
    throw apiError.status >= 500 ? error : apiError;
  } finally {
    shutdown?.removeEventListener('abort', stop);
  }
}

/** Throws `drainedError()` when the server's shutdown cut `result` short. */
function checkNotDrained(o: RunChoicesOptions, result: GenerationResult): void {
  if (result.finishReason === 'cancelled' && o.watch.shutdown?.aborted && !o.watch.clientGone) throw drainedError();
}

type Started = Array<{ job: ChoiceJob; generation: ObservableGeneration }>;
type Head = (object: string) => { id: string; object: string; created: number; model: string };

async function sendWhole(o: RunChoicesOptions, generations: Started, head: Head): Promise<GenerationResult[]> {
  const collected = await Promise.all(
    generations.map(async ({ job, generation }) => {
      const logprobs: LogprobEntry[] = [];
      const tokenIds: number[] = [];
      for await (const chunk of generation) {
        tokenIds.push(...chunk.tokenIds);
        if (chunk.logprobs) logprobs.push(...chunk.logprobs);
      }
      const result = await generation.result;
      checkNotDrained(o, result);
      return { job, logprobs, tokenIds, result };
    }),
  );
  const results = collected.map((c) => c.result);
  if (o.watch.clientGone) return results; // nobody to answer
  const choices = collected.map(({ job, logprobs, tokenIds, result }) =>
    o.format.wholeChoice({
      index: job.index,
      text: result.text,
      tokenIds,
      finishReason: openAiFinishReason(result.finishReason),
      logprobs,
    }),
  );
  o.res.json({ ...head(o.format.object), choices, usage: usage(o.promptTokens, results) });
  return results;
}

/**
 * The headers go out with the first chunk of any choice, not before: until then an error (a
 * full queue, a prompt the engine refuses) can still be a proper status code.
 */
async function streamChoices(o: RunChoicesOptions, sse: SseStream, generations: Started, head: Head): Promise<GenerationResult[]> {
  // OpenAI sends `usage: null` on every chunk when the last one will carry it.
  const chunk = (choices: object[]) => ({ ...head(o.format.chunkObject), choices, ...(o.includeUsage ? { usage: null } : {}) });
  const open = async () => {
    if (sse.started || o.watch.signal.aborted) return;
    sse.start();
    const opening = o.format.openingChoices(generations.map((g) => g.job.index));
    if (opening) await sse.send(chunk(opening));
  };
  const pump = async ({ job, generation }: Started[number]) => {
    let textOffset = 0;
    for await (const generated of generation) {
      await open();
      const choice = o.format.deltaChoice(job.index, generated, textOffset);
      textOffset += generated.text.length;
      if (choice) await sse.send(chunk([choice]));
    }
    const result = await generation.result;
    checkNotDrained(o, result);
    await open();
    for (const choice of o.format.finalChoices(job.index, openAiFinishReason(result.finishReason))) await sse.send(chunk([choice]));
    return result;
  };
  const results = await Promise.all(generations.map(pump));
  if (o.includeUsage) await sse.send({ ...head(o.format.chunkObject), choices: [], usage: usage(o.promptTokens, results) });
  await sse.done();
  return results;
}

/** `cancelled` reaches a client only if the engine stops a sequence on its own (shutdown). */
function openAiFinishReason(reason: FinishReason): OpenAiFinishReason {
  return reason === 'length' ? 'length' : 'stop';
}

function cancelledSummary(o: RunChoicesOptions): RunSummary {
  return { id: o.id, finishReasons: o.jobs.map(() => 'cancelled'), usage: usage(o.promptTokens, []), clientGone: true };
}

/** The prompt counted once per distinct prompt, the completions of every choice added up. */
function usage(promptTokens: number, results: readonly GenerationResult[]): Usage {
  const completionTokens = results.reduce((sum, r) => sum + r.usage.completionTokens, 0);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}
