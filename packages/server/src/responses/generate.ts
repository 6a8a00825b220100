/**
 * One response's generation, whole or streamed, on the chat machinery: the prompt comes from
 * the same plan the chat route makes, tool calls are read with the same `ToolCallFormat` (and,
 * streamed, held back by the same `ToolCallStream`), and a client that leaves or a server that
 * drains cancels the sequence as `runChoices` does. A thinking template's reasoning is split
 * from the text by the chat route's splitter (reasoning.ts) into a `reasoning` item before the
 * message, streamed as `response.reasoning_text.delta` events.
 */
import { ToolCallStream, type GenerationOptions, type ToolCallFormat } from '@mistralrs/core';
import type { Response } from 'express';

import { grammarFailure } from '../constraints.js';
import { toApiError } from '../errors.js';
import { metricsOf } from '../metrics.js';
import { OutputReasoning, type ReasoningSplit, type ReasoningSyntax } from '../reasoning.js';
import { drainedError, type ClientWatch } from '../run-choices.js';
import type { ServingEngine } from '../serving-engine.js';
import {
  functionCallItems,
  messageItem,
  reasoningItem,
  responseObject,
  ResponseEventStream,
  usageOf,
  type MessageItem,
  type OutputItem,
  type ReasoningItem,
  type ResponseHead,
  type ResponseStatus,
} from './output.js';

export interface GenerateResponseOptions {
  engine: ServingEngine;
  /** The served model's id: the label of its metrics. */
  modelId: string;
  res: Response;
  watch: ClientWatch;
  head: ResponseHead;
  promptIds: number[];
  options: GenerationOptions;
  toolFormat: ToolCallFormat | undefined;
  /** A thinking template's syntax and the rendered prompt (does it open the block?). */
  reasoning: { syntax: ReasoningSyntax; prompt: string } | undefined;
  /** Called with the finished response before it is sent (or its last event is): the store. */
  onFinished: (response: Record<string, unknown>, output: OutputItem[]) => void;
}

/** What the generation gave: the text seen by the client and the calls read from it. */
interface Finished {
  status: ResponseStatus;
  output: OutputItem[];
  outputTokens: number;
}

export async function generateResponse(o: GenerateResponseOptions): Promise<void> {
  const events = o.head.request.stream ? new ResponseEventStream(o.res) : undefined;
  if (o.watch.clientGone) return;
  const { shutdown } = o.watch;
  if (shutdown?.aborted) throw drainedError();
  const stop = () => o.watch.abort();
  shutdown?.addEventListener('abort', stop, { once: true });
  try {
    const finished = events ? await streamed(o, events) : await whole(o);
    if (!finished || o.watch.clientGone) return;
    const response = responseObject(o.head, {
      status: finished.status,
      output: finished.output,
      usage: usageOf(o.promptIds.length, finished.outputTokens),
    });
    o.onFinished(response, finished.output);
    if (events) {
      await events.send(finished.status === 'completed' ? 'response.completed' : 'response.incomplete', { response });
      events.end();
    } else {
      o.res.json(response);
    }
  } catch (error) {
    o.watch.abort();
    if (o.watch.clientGone) return;
    const apiError = grammarFailure(error, o.options.grammar) ?? toApiError(error);
    if (events?.started) {
      const failed = responseObject(o.head, { status: 'failed', output: [], usage: null, error: apiError });
      await events.send('response.failed', { response: failed });
      await events.fail(apiError);
    }
    throw apiError.status >= 500 ? error : apiError;
  } finally {
    shutdown?.removeEventListener('abort', stop);
  }
}

/** Starts the generation, timed by /metrics (first token, inter-token latency) as the chat route's are. */
function start(o: GenerateResponseOptions) {
  const metrics = metricsOf(o.res);
  const submittedAt = performance.now();
  const generation = o.engine.complete({ ...o.options, prompt: o.promptIds, signal: o.watch.signal });
  return metrics ? metrics.observeGeneration(o.modelId, generation, submittedAt) : generation;
}

/** The finished result, or undefined when the client left; a drained server throws. */
async function finish(o: GenerateResponseOptions, generation: ReturnType<typeof start>) {
  const result = await generation.result;
  metricsOf(o.res)?.recordPromptTokens(o.modelId, o.promptIds.length);
  if (result.finishReason === 'cancelled') {
    if (o.watch.shutdown?.aborted && !o.watch.clientGone) throw drainedError();
    return undefined;
  }
  return result;
}

async function whole(o: GenerateResponseOptions): Promise<Finished | undefined> {
  const generation = start(o);
  const tokenIds: number[] = [];
  for await (const chunk of generation) tokenIds.push(...chunk.tokenIds);
  const result = await finish(o, generation);
  if (!result) return undefined;
  const status: ResponseStatus = result.finishReason === 'length' ? 'incomplete' : 'completed';
  const split = o.reasoning
    ? OutputReasoning.whole(o.engine.tokenizer, o.reasoning.syntax, o.reasoning.prompt, result.text, tokenIds)
    : { reasoning: '', content: result.text };
  const parsed = o.toolFormat?.parse(split.content);
  const calls = parsed?.calls ?? [];
  const text = calls.length > 0 ? parsed!.content : split.content;
  const output: OutputItem[] = [];
  // Reasoning cut short by max_output_tokens is incomplete, as the message after it would be.
  if (split.reasoning)
    output.push(reasoningItem(split.reasoning, split.content === '' && status !== 'completed' ? 'incomplete' : 'completed'));
  if (text !== '' || calls.length === 0) output.push(messageItem(text, status === 'completed' ? 'completed' : 'incomplete'));
  output.push(...functionCallItems(calls));
  return { status, output, outputTokens: result.usage.completionTokens };
}

async function streamed(o: GenerateResponseOptions, events: ResponseEventStream): Promise<Finished | undefined> {
  const output: OutputItem[] = [];
  const inProgress = () => ({ response: responseObject(o.head, { status: 'in_progress', output: [], usage: null }) });
  const open = async () => {
    if (events.started || o.watch.signal.aborted) return;
    await events.send('response.created', inProgress());
    await events.send('response.in_progress', inProgress());
  };
  let thought: { item: ReasoningItem; index: number; text: string; done: boolean } | undefined;
  const reasoningPart = (text: string) => ({ type: 'reasoning_text', text });
  /** The reasoning item's delta (it is opened by the first). */
  const think = async (text: string) => {
    if (text === '') return;
    if (!thought) {
      thought = { item: reasoningItem('', 'in_progress'), index: output.length, text: '', done: false };
      output.push(thought.item);
      await events.send('response.output_item.added', { output_index: thought.index, item: { ...thought.item, content: [] } });
      const at = { item_id: thought.item.id, output_index: thought.index, content_index: 0 };
      await events.send('response.content_part.added', { ...at, part: reasoningPart('') });
    }
    thought.text += text;
    await events.send('response.reasoning_text.delta', {
      item_id: thought.item.id,
      output_index: thought.index,
      content_index: 0,
      delta: text,
    });
  };
  /** Ends the reasoning item (before the message opens, or at the end). */
  const endThinking = async (status: ReasoningItem['status']) => {
    if (!thought || thought.done) return;
    thought.done = true;
    const { item, index, text } = thought;
    const at = { item_id: item.id, output_index: index, content_index: 0 };
    await events.send('response.reasoning_text.done', { ...at, text });
    await events.send('response.content_part.done', { ...at, part: reasoningPart(text) });
    output[index] = reasoningItem(text, status, item.id);
    await events.send('response.output_item.done', { output_index: index, item: output[index] });
  };
  let message: { item: MessageItem; index: number; text: string } | undefined;
  const partOf = (text: string) => ({ type: 'output_text', text, annotations: [], logprobs: [] });
  const write = async (text: string) => {
    if (!message) {
      await endThinking('completed');
      message = { item: messageItem('', 'in_progress'), index: output.length, text: '' };
      output.push(message.item);
      // Added with no content yet: the part comes next, in its own event.
      await events.send('response.output_item.added', { output_index: message.index, item: { ...message.item, content: [] } });
      const at = { item_id: message.item.id, output_index: message.index, content_index: 0 };
      await events.send('response.content_part.added', { ...at, part: partOf('') });
    }
    if (text === '') return;
    message.text += text;
    await events.send('response.output_text.delta', {
      item_id: message.item.id,
      output_index: message.index,
      content_index: 0,
      delta: text,
      logprobs: [],
    });
  };

  const generation = start(o);
  const tools = o.toolFormat ? new ToolCallStream(o.toolFormat) : undefined;
  const split = o.reasoning && new OutputReasoning(o.engine.tokenizer, o.reasoning.syntax, o.reasoning.prompt);
  const show = async (parts: ReasoningSplit) => {
    await think(parts.reasoning);
    const visible = tools ? tools.push(parts.content) : parts.content;
    if (visible !== '') await write(visible);
  };
  for await (const chunk of generation) {
    await open();
    await show(split ? split.push(chunk.text, chunk.tokenIds) : { reasoning: '', content: chunk.text });
  }
  const result = await finish(o, generation);
  if (!result) return undefined;
  await open();
  const status: ResponseStatus = result.finishReason === 'length' ? 'incomplete' : 'completed';
  if (split) await show(split.finish());
  // Still thinking at the end: cut short by max_output_tokens, or the model wrote no answer.
  await endThinking(message || status === 'completed' ? 'completed' : 'incomplete');
  const ended = tools?.finish();
  if (ended?.rest) await write(ended.rest);
  const calls = functionCallItems(ended?.calls ?? []);
  if (!message && calls.length === 0) await write('');
  if (message) {
    const { item, index, text } = message;
    const at = { item_id: item.id, output_index: index, content_index: 0 };
    await events.send('response.output_text.done', { ...at, text, logprobs: [] });
    await events.send('response.content_part.done', { ...at, part: partOf(text) });
    output[index] = messageItem(text, status === 'completed' ? 'completed' : 'incomplete', item.id);
    await events.send('response.output_item.done', { output_index: index, item: output[index] });
  }
  for (const call of calls) {
    const index = output.length;
    output.push(call);
    await events.send('response.output_item.added', { output_index: index, item: { ...call, status: 'in_progress', arguments: '' } });
    const at = { item_id: call.id, output_index: index };
    await events.send('response.function_call_arguments.delta', { ...at, delta: call.arguments });
    await events.send('response.function_call_arguments.done', { ...at, name: call.name, arguments: call.arguments });
    await events.send('response.output_item.done', { output_index: index, item: call });
  }
  return { status, output, outputTokens: result.usage.completionTokens };
}
