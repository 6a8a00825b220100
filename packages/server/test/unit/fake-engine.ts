/**
 * A scripted stand-in for the engine: each `complete` call plays the steps its script returns
 * (chunks, a failure, or waiting for the client to leave), so the server's handling of every
 * case can be tested without the addon or a model.
 */
import type { EngineLoad } from '@mistralrs/core';

import type { PoolEngine, ServingEmbedder, ServingEngine } from '../../src/index.js';
import type { Express } from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

interface FakeChunk {
  text: string;
  tokenIds: number[];
}
interface FakeResult {
  text: string;
  finishReason: 'stop' | 'length' | 'cancelled';
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
}
export type Step = { chunk: FakeChunk } | { fail: unknown } | { waitForAbort: true } | { waitFor: Promise<unknown> };
export interface CompleteCall {
  prompt: number[];
  signal: AbortSignal;
}

/** A generation that plays `steps`, then finishes (or fails). */
function fakeGeneration(steps: Step[], signal: AbortSignal) {
  let text = '';
  const run = (async function* () {
    for (const step of steps) {
      if ('fail' in step) throw step.fail;
      if ('waitFor' in step) {
        await Promise.race([step.waitFor, new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))]);
        if (signal.aborted) return 'cancelled' as const;
        continue;
      }
      if ('waitForAbort' in step) {
        if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        return 'cancelled' as const;
      }
      text += step.chunk.text;
      yield step.chunk;
    }
    return 'length' as const;
  })();
  let settle!: (r: FakeResult) => void;
  let reject!: (e: unknown) => void;
  const result = new Promise<FakeResult>((res, rej) => {
    settle = res;
    reject = rej;
  });
  result.catch(() => undefined);
  return {
    result,
    async *[Symbol.asyncIterator]() {
      try {
        for (;;) {
          const next = await run.next();
          if (next.done) {
            const n = text.length;
            settle({ text, finishReason: next.value, usage: { promptTokens: 3, completionTokens: n, totalTokens: 3 + n } });
            return;
          }
          yield next.value;
        }
      } catch (error) {
        reject(error);
        throw error;
      }
    },
  };
}

/** What the fake's `load` getter reports: a test may change it between requests. */
export function idleLoad(): EngineLoad {
  return {
    running: 0,
    waiting: 0,
    freeBlocks: 4,
    preemptions: 0,
    prefixCache: { queriedBlocks: 0, hitBlocks: 0, evictedBlocks: 0, cachedBlocks: 0 },
    speculation: { steps: 0, proposed: 0, accepted: 0 },
  };
}

export function fakeEngine(
  script: (call: CompleteCall, index: number) => Step[] | Error,
  calls: CompleteCall[] = [],
  load: EngineLoad = idleLoad(),
): ServingEngine {
  const engine = {
    info: { contextLength: 64, nBlocks: 4, blockSize: 16, kvCacheBytes: 4096, vocabSize: 128, architecture: 'fake', path: '/fake' },
    contextTokens: 64,
    load,
    // Chars as token ids: no BOS, special-token text not parsed (the fake has none).
    encodeChatPromptAsync: async (text: string) => [...text].map((c) => c.charCodeAt(0) % 128),
    tokenizer: {
      vocabSize: 128,
      bosId: undefined,
      addBos: false,
      eosIds: [0],
      encodeAsync: async (text: string) => Uint32Array.from([...text].map((c) => c.charCodeAt(0) % 128)),
      // One token per character: the count itself is the bound.
      minTokens: (text: string) => [...text].length,
      tokenToPiece: (id: number) => String.fromCharCode(id),
      tokenToBytes: (id: number) => Uint8Array.of(id),
    },
    compileGrammar: async () => ({}),
    chatTemplate: {
      text: () => '{{ messages }}',
      selectVariant: () => 'default',
      render: async ({ messages }: { messages: Array<{ content: string }> }) => {
        if (messages.some((m) => m.content === 'unrenderable')) {
          throw Object.assign(new Error('chat template from fake: Cannot perform operation on null values'), {
            name: 'ChatTemplateError',
            kind: 'render_error',
            isClientError: false,
          });
        }
        if (messages.some((m) => m.content === 'forbidden')) {
          throw Object.assign(new Error('chat template from fake: raise_exception: roles must alternate'), {
            name: 'ChatTemplateError',
            isClientError: true,
          });
        }
        return messages.map((m) => m.content).join('\n');
      },
    },
    complete: (request: { prompt: number[]; signal: AbortSignal }) => {
      const call = { prompt: request.prompt, signal: request.signal };
      calls.push(call);
      const steps = script(call, calls.length - 1);
      if (steps instanceof Error) throw steps;
      return fakeGeneration(steps, request.signal);
    },
  };
  return engine as unknown as ServingEngine;
}

/** One app at a time on an ephemeral loopback port, closed after each test by `closeApp`. */
let listening: Server | undefined;

export async function listenOnLoopback(app: Express): Promise<string> {
  listening = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => listening!.once('listening', resolve));
  return `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;
}

export async function closeApp(): Promise<void> {
  if (!listening) return;
  listening.closeAllConnections();
  await new Promise((resolve) => listening!.close(resolve));
  listening = undefined;
}

/**
 * An embedding model that needs no weights: each input's embedding is `[n, first, last, 0…]`
 * (its token count, first and last token; texts are their UTF-16 code units), `dimensions`
 * wide, truncated as asked. Enough to check the route's shapes and encodings.
 */
export function fakeEmbedder(dimensions = 4): PoolEngine {
  const info = { dimensions, maxTokens: 64, vocabSize: 1000, weightBytes: 0, normalize: false } as unknown as ServingEmbedder['info'];
  const embed: ServingEmbedder['embed'] = async (input, options = {}) => {
    const items =
      typeof input === 'string'
        ? [input]
        : input.every((x) => typeof x === 'number')
          ? [input as readonly number[]]
          : (input as ReadonlyArray<string | readonly number[]>);
    const ids = items.map((item) => (typeof item === 'string' ? Array.from(item, (c) => c.charCodeAt(0)) : [...item]));
    const width = options.dimensions ?? dimensions;
    const embeddings = ids.map((seq) =>
      Float32Array.from({ length: width }, (_, i) => [seq.length, seq[0]!, seq[seq.length - 1]!][i] ?? 0),
    );
    return { embeddings, promptTokens: ids.reduce((n, seq) => n + seq.length, 0) };
  };
  return { embed, info, tokenizer: {} as ServingEmbedder['tokenizer'], waiting: 0, close: () => {} } as PoolEngine;
}
