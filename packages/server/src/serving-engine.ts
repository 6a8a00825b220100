import type { Engine } from '@mistralrs/core';

/**
 * The part of `Engine` the server uses. Chat prompts are rendered and tokenized by the server
 * (to check their length before queueing), so only `complete` is called to generate; `load`
 * and `info` feed `GET /v1/stats`.
 */
export type ServingEngine = Pick<
  Engine,
  'complete' | 'info' | 'load' | 'contextTokens' | 'tokenizer' | 'chatTemplate' | 'encodeChatPromptAsync' | 'compileGrammar'
>;
