/**
 * Prompts to token ids, before anything is queued: the length check against the context must
 * happen here, where it can still be a fast 400, and the ids are then handed to the engine as
 * they are (so the template is rendered and the text tokenized exactly once).
 */
import {
  planChatPrompt,
  renderChatPrompt,
  type ChatMessage,
  type ChatPromptPlan,
  type ChatPromptRequest,
  type ChatTemplate,
} from '@mistralrs/core';

import { invalidRequest } from './errors.js';
import type { ServingEngine } from './serving-engine.js';

/** The model's chat template, or a 400 `no_chat_template` when it has none. */
export function requireChatTemplate(engine: ServingEngine): ChatTemplate {
  const template = engine.chatTemplate;
  if (!template) {
    throw invalidRequest(
      'this model has no chat template: use /v1/completions, or start the server with --chat-template',
      'messages',
      'no_chat_template',
    );
  }
  return template;
}

/**
 * A chat's plan (template variant, tools, template variables), as `Engine.chat` makes it; a
 * template variable the template does not read is a 400 `unsupported_parameter` naming the
 * field that set it (`params`: variable name → field).
 */
export function chatPlan(engine: ServingEngine, request: ChatPromptRequest, params: Readonly<Record<string, string>> = {}): ChatPromptPlan {
  const plan = planChatPrompt(requireChatTemplate(engine), request);
  const unread = plan.unreadTemplateArgs[0];
  if (unread !== undefined) {
    const param = params[unread] ?? unread;
    throw invalidRequest(
      `this model's chat template does not read ${unread}, so ${param} cannot be honoured`,
      param,
      'unsupported_parameter',
    );
  }
  return plan;
}

/**
 * A chat's prompt: the template rendered (with the generation prompt unless told otherwise),
 * then tokenized by the engine's rule (special-token text parsed; BOS added only if the
 * template did not write it), off the JavaScript thread: a long prompt must not stall every
 * other stream. The same path as `Engine.chat` (core's `planChatPrompt`/`renderChatPrompt`).
 */
export async function chatPromptIds(
  engine: ServingEngine,
  messages: readonly ChatMessage[],
  addGenerationPrompt = true,
): Promise<number[]> {
  return renderChatPrompt(engine, chatPlan(engine, { messages, addGenerationPrompt }));
}

/**
 * A chat request's prompt ids: rendered as `chatPromptIds` does, and refused before tokenizing
 * when the rendered text cannot fit the context whatever its tokens (`checkTextFits`).
 * `onRendered` is given the rendered text (whether it opens a think block: reasoning.ts).
 */
export function chatRequestIds(engine: ServingEngine, plan: ChatPromptPlan, onRendered?: (text: string) => void): Promise<number[]> {
  return renderChatPrompt(engine, plan, (text) => {
    checkTextFits(engine, text, 'messages');
    onRendered?.(text);
  });
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
