/**
 * What `/v1/responses` writes: the `response` object, its output items, and the typed
 * server-sent events of a streamed response (`event: <type>` + `data: <json>`, each with a
 * `sequence_number`; no `[DONE]`, as OpenAI ends these streams).
 */
import type { ChatMessage, ParsedToolCall } from '@mistralrs/core';
import type { Response } from 'express';

import type { ApiError } from '../errors.js';
import { EventStreamWriter } from '../sse.js';
import { newItemId, type ResponsesRequest } from './request.js';

export type ResponseStatus = 'in_progress' | 'completed' | 'incomplete' | 'failed';

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export interface MessageItem {
  id: string;
  type: 'message';
  status: 'in_progress' | 'completed' | 'incomplete';
  role: 'assistant';
  content: Array<{ type: 'output_text'; text: string; annotations: []; logprobs: [] }>;
}

export interface FunctionCallItem {
  id: string;
  type: 'function_call';
  status: 'in_progress' | 'completed';
  call_id: string;
  name: string;
  arguments: string;
}

/** The model's reasoning (a thinking template's think block or analysis channel), whole; no summary. */
export interface ReasoningItem {
  id: string;
  type: 'reasoning';
  status: 'in_progress' | 'completed' | 'incomplete';
  summary: [];
  content: Array<{ type: 'reasoning_text'; text: string }>;
}

export type OutputItem = ReasoningItem | MessageItem | FunctionCallItem;

/** What every version of one response shares (created, in progress, completed). */
export interface ResponseHead {
  id: string;
  createdAt: number;
  modelId: string;
  request: ResponsesRequest;
}

export function usageOf(inputTokens: number, outputTokens: number): ResponseUsage {
  return {
    input_tokens: inputTokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: inputTokens + outputTokens,
  };
}

/** The `response` object in OpenAI's field order. */
export function responseObject(
  head: ResponseHead,
  state: { status: ResponseStatus; output: OutputItem[]; usage: ResponseUsage | null; error?: ApiError },
): Record<string, unknown> {
  const r = head.request;
  const done = state.status === 'completed' || state.status === 'incomplete';
  return {
    id: head.id,
    object: 'response',
    created_at: head.createdAt,
    status: state.status,
    background: false,
    completed_at: done ? Math.floor(Date.now() / 1000) : null,
    error: state.error ? { code: state.error.code, message: state.error.message } : null,
    incomplete_details: state.status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: r.instructions ?? null,
    max_output_tokens: r.maxOutputTokens ?? null,
    max_tool_calls: null,
    model: head.modelId,
    output: state.output,
    parallel_tool_calls: r.parallelToolCalls,
    previous_response_id: r.previousResponseId ?? null,
    reasoning: r.reasoningEcho,
    service_tier: 'default',
    store: r.store,
    temperature: r.sampling.temperature ?? null,
    text: r.textEcho,
    tool_choice: r.toolChoiceEcho,
    tools: r.toolsEcho,
    top_logprobs: 0,
    top_p: r.sampling.topP ?? null,
    truncation: 'disabled',
    usage: state.usage,
    user: r.user ?? null,
    metadata: r.metadata,
  };
}

export function messageItem(text: string, status: MessageItem['status'], id = newItemId('msg')): MessageItem {
  return { id, type: 'message', status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] };
}

export function reasoningItem(text: string, status: ReasoningItem['status'], id = newItemId('rs')): ReasoningItem {
  return { id, type: 'reasoning', status, summary: [], content: [{ type: 'reasoning_text', text }] };
}

export function functionCallItems(calls: readonly ParsedToolCall[]): FunctionCallItem[] {
  return calls.map((call) => ({
    id: newItemId('fc'),
    type: 'function_call',
    status: 'completed',
    call_id: newItemId('call'),
    name: call.name,
    arguments: call.arguments,
  }));
}

/** The output items as the next turn's chat history: one assistant message (text and calls). */
export function outputMessages(output: readonly OutputItem[]): ChatMessage[] {
  const text = output.flatMap((item) => (item.type === 'message' ? item.content.map((c) => c.text) : [])).join('');
  const calls = output.filter((item): item is FunctionCallItem => item.type === 'function_call');
  const message: ChatMessage = { role: 'assistant', content: text };
  if (calls.length > 0) {
    message.tool_calls = calls.map((c) => ({ id: c.call_id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
  }
  return [message];
}

/**
 * A stream of typed events with their `sequence_number`. Headers go out with the first event,
 * so that an error before it can still be a status code.
 */
export class ResponseEventStream {
  #sequence = 0;
  readonly #out: EventStreamWriter;

  constructor(res: Response) {
    this.#out = new EventStreamWriter(res);
  }

  get started(): boolean {
    return this.#out.started;
  }

  async send(type: string, fields: Record<string, unknown>): Promise<void> {
    this.#out.start();
    await this.#out.send({ type, sequence_number: this.#sequence++, ...fields }, type);
  }

  /** `error` (openai-node raises it as an APIError), then the end of the stream. */
  async fail(error: ApiError): Promise<void> {
    await this.send('error', { code: error.code, message: error.message, param: error.param });
    this.end();
  }

  end(): void {
    this.#out.end();
  }
}
