import {
  EmbeddingModel,
  type Engine,
  type EngineOptions,
  type GenerationOptions,
  type GenerationResult,
  type Grammar,
  type ModelFormat,
} from '@mistralrs/core';

import type { EngineSettings } from '../engine-flags.js';
import { interactiveChat } from '../interactive.js';
import { loadModel, type LoadedModel, type ModelKind } from '../load-model.js';
import { serveCommand, servedModelId, serveUntilSignal, type ServeCliOptions } from './serve.js';

export interface RunOptions {
  /** Model path, folder or registry id (`-m`); the default model when absent. */
  model?: string;
  /** File inside the `-m` folder or Hub repository (`-f`); several for a split GGUF. */
  file?: string | readonly string[];
  /** What a Hub repository must hold: `gguf` or `plain`; told by its files when absent (`run`, `serve`). */
  format?: ModelFormat;
  /** `--revision`: the Hub repository's branch, tag or commit. */
  revision?: string;
  /** `-t/--tok-model-id`: another tokenizer, from a folder or a Hub repository. */
  tokenizerModel?: string;
  interactive: boolean;
  prompt?: string;
  maxTokens?: number;
  json: boolean;
  throughput: boolean;
  chatTemplate?: string;
  tokenSource?: string;
  sampling: GenerationOptions;
  /** `--grammar` / `--grammar-file`: the output of the chat or the prompt follows it. */
  grammar?: { grammar: Grammar; source: string };
  /** Scheduling and KV cache settings (`--max-running`, `--pa-*`), `--dtype` and `-a`, for the chat and the server alike. */
  engine: EngineSettings & Pick<EngineOptions, 'dtype' | 'architecture'>;
  /** Serve the HTTP API (`--port` given) rather than chat. */
  serve?: ServeCliOptions;
  /** What the model must be (`embedding` for the `embedding` command); told by its files by default. */
  kind?: ModelKind;
}

/** Loads the model, then serves it, or runs one prompt or the interactive chat. Returns the exit code. */
export async function runCommand(o: RunOptions): Promise<number> {
  let loaded: LoadedModel;
  try {
    loaded = await loadModel(
      {
        model: o.model,
        file: o.file,
        chatTemplate: o.chatTemplate,
        tokenSource: o.tokenSource,
        ...(o.format !== undefined ? { format: o.format } : {}),
        ...(o.revision !== undefined ? { revision: o.revision } : {}),
        ...(o.tokenizerModel !== undefined ? { tokenizerModel: o.tokenizerModel } : {}),
        ...o.engine,
      },
      o.kind,
    );
  } catch (error) {
    // Bad settings (EngineError 'InvalidArgumentError'), a missing file, an unknown model:
    // each is the user's to fix, so one line and no stack trace.
    process.stderr.write(`mistralrs-server: ${(error as Error).message}\n`);
    return 1;
  }
  if (loaded instanceof EmbeddingModel) return embeddingCommand(loaded, o);
  const engine = loaded;
  try {
    const requested = o.grammar;
    if (requested) {
      // Compiled once, up front: a bad grammar is reported before any chat starts.
      try {
        o = { ...o, sampling: { ...o.sampling, grammar: await engine.compileGrammar(requested.grammar) } };
      } catch (error) {
        process.stderr.write(`mistralrs-server: ${requested.source}: ${(error as Error).message}\n`);
        return 1;
      }
    }
    if (o.serve) return await serveCommand(engine, servedModelId(o.model, typeof o.file === 'string' ? o.file : o.file?.[0]), o.serve);
    if (o.prompt !== undefined) return await oneShot(engine, o);
    if (o.interactive || process.stdin.isTTY) return await interactiveChat(engine, o);
    process.stderr.write('mistralrs-server: nothing to do: give --prompt TEXT, or -i for an interactive chat\n');
    return 1;
  } finally {
    engine.close();
  }
}

/**
 * An embedding model: served (`/v1/embeddings`), or `--prompt TEXT` embedded and printed as a
 * JSON array; it has no chat.
 */
async function embeddingCommand(model: EmbeddingModel, o: RunOptions): Promise<number> {
  try {
    if (o.serve)
      return await serveUntilSignal(
        { engine: model, modelId: servedModelId(o.model, undefined) },
        `${servedModelId(o.model, undefined)}, embeddings`,
        o.serve,
      );
    if (o.prompt !== undefined) {
      const { embeddings } = await model.embed(o.prompt);
      process.stdout.write(`${JSON.stringify(Array.from(embeddings[0]!))}\n`);
      return 0;
    }
    process.stderr.write(
      `mistralrs-server: ${model.info.path} is an embedding model: it has no chat; serve it (--port, or serve -m) for POST /v1/embeddings, or give --prompt TEXT to print its embedding\n`,
    );
    return 1;
  } catch (error) {
    process.stderr.write(`mistralrs-server: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await model.close();
  }
}

async function oneShot(engine: Engine, o: RunOptions): Promise<number> {
  const request = { ...o.sampling, maxTokens: o.maxTokens };
  const generation = engine.chatTemplate
    ? engine.chat({ ...request, messages: [{ role: 'user', content: o.prompt! }] })
    : engine.complete({ ...request, prompt: o.prompt! });
  let result: GenerationResult;
  try {
    if (!o.json) {
      for await (const chunk of generation) process.stdout.write(chunk.text);
      process.stdout.write('\n');
    }
    result = await generation.result;
  } catch (error) {
    process.stderr.write(`mistralrs-server: ${(error as Error).message}\n`);
    return 1;
  }
  if (o.json) process.stdout.write(`${JSON.stringify(jsonResult(result))}\n`);
  if (o.throughput) process.stderr.write(`${throughputLine(result)}\n`);
  return 0;
}

export function jsonResult(r: GenerationResult) {
  return {
    text: r.text,
    prompt_token_ids: r.promptTokenIds,
    token_ids: r.tokenIds,
    finish_reason: r.finishReason,
    prompt_tps: r.timings.promptTps,
    generation_tps: r.timings.generationTps,
    usage: {
      prompt_tokens: r.usage.promptTokens,
      completion_tokens: r.usage.completionTokens,
      total_tokens: r.usage.totalTokens,
    },
    ...(r.speculation ? { speculation: { proposed_tokens: r.speculation.proposed, accepted_tokens: r.speculation.accepted } } : {}),
  };
}

export function throughputLine(r: GenerationResult): string {
  const s = r.speculation;
  return (
    `prompt: ${r.usage.promptTokens} tokens, ${r.timings.promptTps.toFixed(1)} tok/s; ` +
    `generation: ${r.usage.completionTokens} tokens, ${r.timings.generationTps.toFixed(1)} tok/s` +
    (s ? `; speculation: ${s.accepted} of ${s.proposed} proposed tokens kept` : '')
  );
}
