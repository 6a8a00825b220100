import type { EmbeddingModel, Engine } from '@mistralrs/core';

/**
 * The part of `Engine` the server uses. Chat prompts are rendered and tokenized by the server
 * (to check their length before queueing), so only `complete` is called to generate; `load`
 * and `info` feed `GET /v1/stats`.
 */
export type ServingEngine = Pick<
  Engine,
  'complete' | 'info' | 'load' | 'contextTokens' | 'tokenizer' | 'chatTemplate' | 'encodeChatPromptAsync' | 'compileGrammar'
>;

/** The part of `EmbeddingModel` the server uses (`POST /v1/embeddings`). */
export type ServingEmbedder = Pick<EmbeddingModel, 'embed' | 'info' | 'tokenizer' | 'waiting'>;

/** What a model of the server is: a generation engine or an embedding model. */
export type ServedModel = ServingEngine | ServingEmbedder;

/** Whether the model embeds (answers `/v1/embeddings`) rather than generates. */
export function isEmbedder(model: ServedModel): model is ServingEmbedder {
  return 'embed' in model;
}
