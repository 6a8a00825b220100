/**
 * What the Messages route answers: the `message` object, and the same message as Anthropic's
 * server-sent events (`message_start`, then per content block `content_block_start`, its
 * deltas and `content_block_stop`, then `message_delta` with the stop reason and usage, and
 * `message_stop`; one `ping` after the first block opens). Each event is an `event:` line and
 * a `data:` line whose `type` repeats the event's name, as Anthropic frames them; an error
 * after the headers went out is an `error` event, which Anthropic's SDKs raise.
 */
import { randomBytes } from 'node:crypto';

import type { Response } from 'express';

import type { FinishReason, JsonObject, ParsedToolCall } from '@mistralrs/core';

import type { ApiError } from '../errors.js';
import { EventStreamWriter } from '../sse.js';
import { anthropicError } from './errors.js';

export type AnthropicStopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use';

export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
}

export type AnthropicContentBlock =
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: JsonObject };

/**
 * A thinking block's `signature`. Anthropic signs its thinking so that it can check it when
 * sent back; a local model's thinking has nothing to sign, and, as other local servers do, the
 * signature is empty (Anthropic's SDKs take any string; this server accepts any back).
 */
export const THINKING_SIGNATURE = '';

export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicContentBlock[];
  stop_reason: AnthropicStopReason | null;
  stop_sequence: string | null;
  usage: AnthropicUsage;
}

/** `msg_…` and `toolu_…`: Anthropic's prefixes, then 24 random hex digits. */
export function newMessageId(): string {
  return `msg_${randomBytes(12).toString('hex')}`;
}

function newToolUseId(): string {
  return `toolu_${randomBytes(12).toString('hex')}`;
}

/**
 * Calls as `tool_use` blocks; undefined when one of them has arguments that are not a JSON
 * object (the output is then shown as the text it is, not as a call with made-up input).
 */
export function toolUseBlocks(calls: readonly ParsedToolCall[]): AnthropicContentBlock[] | undefined {
  const blocks: AnthropicContentBlock[] = [];
  for (const call of calls) {
    let input: unknown;
    try {
      input = JSON.parse(call.arguments);
    } catch {
      return undefined;
    }
    if (input === null || typeof input !== 'object' || Array.isArray(input)) return undefined;
    blocks.push({ type: 'tool_use', id: newToolUseId(), name: call.name, input: input as JsonObject });
  }
  return blocks;
}

/** Why generation ended, in Anthropic's words; `stopSequence` is the stop string that ended it, if one did. */
export function stopReason(finish: FinishReason, stopSequence: string | null, calledTools: boolean): AnthropicStopReason {
  if (calledTools) return 'tool_use';
  if (finish === 'length') return 'max_tokens';
  return stopSequence !== null ? 'stop_sequence' : 'end_turn';
}

/**
 * The stop sequence that ended a generation: the engine cuts the text just before the first
 * stop string to appear, so it is the one that appears first in the whole output (the shortest
 * of those starting there, which completes first); null when the output holds none (the model
 * ended its turn).
 */
export function matchedStopSequence(fullText: string, stops: readonly string[] | undefined): string | null {
  let best: { at: number; stop: string } | null = null;
  for (const stop of stops ?? []) {
    const at = fullText.indexOf(stop);
    if (at < 0) continue;
    if (!best || at < best.at || (at === best.at && stop.length < best.stop.length)) best = { at, stop };
  }
  return best?.stop ?? null;
}

/** Server-sent events as Anthropic frames them, with backpressure. */
export class AnthropicEventStream {
  readonly #out: EventStreamWriter;
  /** Index of the content block now open, if any. */
  #open: { index: number; type: AnthropicContentBlock['type'] } | undefined;
  #blocks = 0;
  #pinged = false;

  constructor(res: Response) {
    this.#out = new EventStreamWriter(res);
  }

  get started(): boolean {
    return this.#out.started;
  }

  /** Sends the headers and `message_start` (the message without content, its usage so far). */
  async start(message: AnthropicMessage): Promise<void> {
    if (this.#out.started) return;
    this.#out.start();
    await this.#event('message_start', { type: 'message_start', message: { ...message, content: [] } });
  }

  /** Thinking: opens a thinking block unless one is open (it comes before the text). */
  async thinking(thinking: string): Promise<void> {
    if (thinking === '') return;
    if (this.#open?.type !== 'thinking') await this.#openBlock({ type: 'thinking', thinking: '', signature: '' });
    await this.#event('content_block_delta', {
      type: 'content_block_delta',
      index: this.#open!.index,
      delta: { type: 'thinking_delta', thinking },
    });
  }

  /** Text: opens a text block unless one is open. */
  async text(text: string): Promise<void> {
    if (text === '') return;
    if (this.#open?.type !== 'text') await this.#openBlock({ type: 'text', text: '' });
    await this.#event('content_block_delta', {
      type: 'content_block_delta',
      index: this.#open!.index,
      delta: { type: 'text_delta', text },
    });
  }

  /** A whole tool call: its block opens with empty input, the input follows as one JSON delta. */
  async toolUse(block: Extract<AnthropicContentBlock, { type: 'tool_use' }>): Promise<void> {
    await this.#openBlock({ ...block, input: {} });
    await this.#event('content_block_delta', {
      type: 'content_block_delta',
      index: this.#open!.index,
      delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) },
    });
    await this.#closeBlock();
  }

  /** Closes the open block, then `message_delta` and `message_stop`, and ends the response. */
  async finish(reason: AnthropicStopReason, stopSequence: string | null, usage: AnthropicUsage): Promise<void> {
    await this.#closeBlock();
    await this.#ping();
    await this.#event('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: reason, stop_sequence: stopSequence },
      usage,
    });
    await this.#event('message_stop', { type: 'message_stop' });
    this.#out.end();
  }

  /** The last event of a stream that failed after its headers went out. */
  async error(error: ApiError): Promise<void> {
    if (!this.#out.started) return;
    await this.#event('error', anthropicError(error).body);
    this.#out.end();
  }

  async #openBlock(block: AnthropicContentBlock): Promise<void> {
    await this.#closeBlock();
    this.#open = { index: this.#blocks++, type: block.type };
    await this.#event('content_block_start', { type: 'content_block_start', index: this.#open.index, content_block: block });
    await this.#ping();
  }

  async #closeBlock(): Promise<void> {
    if (!this.#open) return;
    const { index, type } = this.#open;
    this.#open = undefined;
    // As Anthropic ends a thinking block: its signature, then the stop.
    if (type === 'thinking') {
      await this.#event('content_block_delta', {
        type: 'content_block_delta',
        index,
        delta: { type: 'signature_delta', signature: THINKING_SIGNATURE },
      });
    }
    await this.#event('content_block_stop', { type: 'content_block_stop', index });
  }

  /** One ping, after the first block opens (or before the end when none did), as Anthropic sends it. */
  async #ping(): Promise<void> {
    if (this.#pinged) return;
    this.#pinged = true;
    await this.#event('ping', { type: 'ping' });
  }

  #event(name: string, data: unknown): Promise<void> {
    return this.#out.send(data, name);
  }
}
