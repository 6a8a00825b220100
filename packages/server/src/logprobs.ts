/**
 * Token log-probabilities in OpenAI's two shapes: chat's `{content: [{token, logprob, bytes,
 * top_logprobs}]}` and the legacy completions' parallel arrays.
 */
import type { GenerationChunk, Tokenizer } from '@mistralrs/core';

export type LogprobEntry = NonNullable<GenerationChunk['logprobs']>[number];
type TokenTexts = Pick<Tokenizer, 'tokenToPiece' | 'tokenToBytes'>;

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  /** The token's UTF-8 bytes: a token may hold part of a character, which `token` cannot show. */
  bytes: number[];
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  /** Where each token starts in the completion's text (characters, from 0). */
  text_offset: number[];
}

export function chatLogprobs(tokenizer: TokenTexts, entries: readonly LogprobEntry[]): ChatTokenLogprob[] {
  const one = (token: number, logprob: number): ChatTopLogprob => ({
    token: tokenizer.tokenToPiece(token),
    logprob: finite(logprob),
    bytes: Array.from(tokenizer.tokenToBytes(token)),
  });
  return entries.map((entry) => ({
    ...one(entry.token, entry.logprob),
    top_logprobs: entry.top.map((alt) => one(alt.token, alt.logprob)),
  }));
}

/** `startOffset`: the characters of the completion before these tokens (when streaming). */
export function completionLogprobs(tokenizer: TokenTexts, entries: readonly LogprobEntry[], startOffset = 0): CompletionLogprobs {
  const result: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = startOffset;
  for (const entry of entries) {
    const piece = tokenizer.tokenToPiece(entry.token);
    result.tokens.push(piece);
    result.token_logprobs.push(finite(entry.logprob));
    result.top_logprobs.push(Object.fromEntries(entry.top.map((alt) => [tokenizer.tokenToPiece(alt.token), finite(alt.logprob)])));
    result.text_offset.push(offset);
    offset += piece.length;
  }
  return result;
}

/** JSON has no -Infinity; OpenAI writes -9999 for a token that cannot be chosen. */
function finite(logprob: number): number {
  return Number.isFinite(logprob) ? logprob : -9999;
}
