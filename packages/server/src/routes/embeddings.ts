/**
 * POST /v1/embeddings, as OpenAI's: `input` a string, a list of strings, a list of token ids
 * or a list of such lists; `encoding_format` `float` (default) or `base64` (little-endian
 * float32, what the openai clients ask for and decode); `dimensions` (Matryoshka: the first
 * values, renormalised). Beyond OpenAI's fields, as mistral.rs and sentence-transformers have
 * them: `truncate_sequence` (cut a long input instead of refusing it), `prompt_name` and
 * `prompt` (a text before each text input: Qwen3-Embedding's instruction, EmbeddingGemma's
 * task prefix).
 */
import type { RequestHandler } from 'express';

import { invalidRequest } from '../errors.js';
import { routeEmbeddingModel, type AppContext } from '../route-context.js';
import { readBoolean, readInteger, readString, requireObjectBody } from '../validate.js';

/** OpenAI's limit on inputs per request. */
export const MAX_EMBEDDING_INPUTS = 2048;

type Input = string | string[] | number[] | number[][];

export function embeddingsRoute(app: AppContext): RequestHandler {
  return async (req, res) => {
    const body = requireObjectBody(req.body);
    const input = readInput(body.input);
    const format = readString(body, 'encoding_format') ?? 'float';
    if (format !== 'float' && format !== 'base64') {
      throw invalidRequest(`encoding_format must be "float" or "base64", got ${JSON.stringify(format)}`, 'encoding_format');
    }
    const dimensions = readInteger(body, 'dimensions', { min: 1 });
    const truncate = readBoolean(body, 'truncate_sequence');
    const prompt = readString(body, 'prompt');
    const promptName = readString(body, 'prompt_name');
    readString(body, 'user'); // accepted as OpenAI's, unused
    const { embedder, modelId } = routeEmbeddingModel(app, readString(body, 'model'), res);
    if (dimensions !== undefined && dimensions > embedder.info.dimensions) {
      throw invalidRequest(
        `dimensions: ${dimensions} is more than this model's ${embedder.info.dimensions}`,
        'dimensions',
        'integer_above_max_value',
      );
    }
    // A client that leaves stops its inputs from taking a pass.
    const left = new AbortController();
    res.once('close', () => left.abort());
    const result = await embedder.embed(input, {
      ...(dimensions !== undefined ? { dimensions } : {}),
      ...(truncate !== undefined ? { truncate } : {}),
      ...(prompt !== undefined ? { prompt } : {}),
      ...(promptName !== undefined ? { promptName } : {}),
      signal: left.signal,
    });
    res.json({
      object: 'list',
      data: result.embeddings.map((embedding, index) => ({
        object: 'embedding',
        index,
        embedding: format === 'base64' ? base64Floats(embedding) : Array.from(embedding),
      })),
      model: modelId,
      usage: { prompt_tokens: result.promptTokens, total_tokens: result.promptTokens },
    });
  };
}

/** `input`, checked for shape (the model checks token ids against its vocabulary). */
function readInput(value: unknown): Input {
  if (value === undefined || value === null) throw invalidRequest('input is required', 'input', 'missing_required_parameter');
  if (typeof value === 'string') {
    if (value === '') throw invalidRequest('input must not be an empty string', 'input', 'empty_string');
    return value;
  }
  if (!Array.isArray(value))
    throw invalidRequest(
      'input must be a string, an array of strings, an array of token ids or an array of such arrays',
      'input',
      'invalid_type',
    );
  if (value.length === 0) throw invalidRequest('input must not be an empty array', 'input', 'empty_array');
  if (value.length > MAX_EMBEDDING_INPUTS) {
    throw invalidRequest(
      `input has ${value.length} items, more than the ${MAX_EMBEDDING_INPUTS} a request may hold`,
      'input',
      'array_above_max_length',
    );
  }
  if (value.every((x) => typeof x === 'string')) {
    const empty = value.indexOf('');
    if (empty >= 0) throw invalidRequest(`input[${empty}] must not be an empty string`, `input[${empty}]`, 'empty_string');
    return value as string[];
  }
  if (value.every((x) => typeof x === 'number')) return tokenIds(value, 'input');
  if (value.every((x) => Array.isArray(x))) {
    return value.map((ids, i) => {
      if ((ids as unknown[]).length === 0) throw invalidRequest(`input[${i}] must not be an empty array`, `input[${i}]`, 'empty_array');
      return tokenIds(ids as unknown[], `input[${i}]`);
    });
  }
  throw invalidRequest(
    'input must be a string, an array of strings, an array of token ids or an array of such arrays, not a mix',
    'input',
    'invalid_type',
  );
}

function tokenIds(values: readonly unknown[], param: string): number[] {
  const bad = values.findIndex((t) => typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0);
  if (bad >= 0)
    throw invalidRequest(
      `${param}[${bad}] is not a token id (a non-negative integer): ${JSON.stringify(values[bad])}`,
      param,
      'invalid_type',
    );
  return values as number[];
}

/** The little-endian bytes of the float32 values, in base64 (OpenAI's `encoding_format: base64`). */
function base64Floats(values: Float32Array): string {
  const bytes = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => {
    bytes.writeFloatLE(v, i * 4);
  });
  return bytes.toString('base64');
}
