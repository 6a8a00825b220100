import type { Engine } from '@mistralrs/core';

/**
 * The part of `Engine` the server uses. Chat prompts are rendered and tokenized by the server
 * (to check their length before queueing), so only `complete` is called to generate.
 */
export type ServingEngine = Pick<Engine, 'complete' | 'info' | 'tokenizer' | 'chatTemplate'>;
