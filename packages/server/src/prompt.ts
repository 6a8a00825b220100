/**
 * Prompts to token ids, before anything is queued: the length check against the context must
 * happen here, where it can still be a fast 400, and the ids are then handed to the engine as
 * they are (so the template is rendered and the text tokenized exactly once).
 */
import type { ChatMessage, ChatTool } from '@mistralrs/core';

import { invalidRequest } from './errors.js';
import type { ServingEngine } from './serving-engine.js';

/**
 * A chat's prompt: the template rendered with the generation prompt, then tokenized by the
 * engine's own rule (special-token text parsed; BOS added only if the template did not write
 * it), off the JavaScript thread: a long prompt must not stall every other stream.
 */
export async function chatPromptIds(
  engine: ServingEngine,
  messages: readonly ChatMessage[],
  addGenerationPrompt = true,
  tools?: readonly ChatTool[],
  /** Refuse a rendered prompt that cannot fit the context before tokenizing it (not for /tokenize). */
  mustFit = true,
): Promise<number[]> {
  const template = engine.chatTemplate;
  if (!template) {
    throw invalidRequest(
      'this model has no chat template: use /v1/completions, or start the server with --chat-template',
      'messages',
      'no_chat_template',
    );
  }
  const text = await template.render({ messages, tools, addGenerationPrompt });
  if (mustFit) checkTextFits(engine, text, 'messages');
  return engine.encodeChatPromptAsync(text);
}

/** A plain prompt: text as `Engine.complete` tokenizes it (BOS added, special-token text kept literal). */
export async function textPromptIds(engine: ServingEngine, prompt: string | number[]): Promise<number[]> {
  if (typeof prompt !== 'string') return prompt;
  checkTextFits(engine, prompt, 'prompt');
  return Array.from(await engine.tokenizer.encodeAsync(prompt, { addSpecialTokens: true, parseSpecial: false }));
}

/**
 * 400 `context_length_exceeded` when `text` cannot fit the context whatever its tokens: its
 * UTF-8 length over the most bytes one token can stand for is already the context or more
 * (`Tokenizer.minTokens`, a bound no tokenization goes below). Milliseconds for a prompt of
 * megabytes, which would otherwise be tokenized in full only to be refused.
 */
function checkTextFits(engine: ServingEngine, text: string, param: 'messages' | 'prompt'): void {
  const context = engine.contextTokens;
  const atLeast = engine.tokenizer.minTokens(text);
  if (atLeast === undefined || atLeast < context) return;
  throw invalidRequest(
    `this model's maximum context length is ${context} tokens, but the prompt has at least ${atLeast} tokens ` +
      `(${Buffer.byteLength(text)} bytes of text); shorten the prompt`,
    param,
    'context_length_exceeded',
  );
}

/** 400 `context_length_exceeded` unless the prompt leaves room for at least one generated token. */
export function checkPromptFits(ids: readonly number[], context: number, param: 'messages' | 'prompt'): void {
  if (ids.length === 0) throw invalidRequest('the prompt is empty', param, 'empty_string');
  if (ids.length >= context) {
    throw invalidRequest(
      `this model's maximum context length is ${context} tokens, but the prompt has ${ids.length} tokens ` +
        '(and at least one token must be generated); shorten the prompt',
      param,
      'context_length_exceeded',
    );
  }
}
