/**
 * POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API over the chat
 * route's machinery. The request becomes the server's chat request (anthropic/request.ts),
 * whose prompt is planned, rendered and tokenized as the chat route does it (prompt.ts over
 * core's `planChatPrompt`/`renderChatPrompt`, a forced tool call by core's grammar), and the
 * output is read back into text and `tool_use` blocks by core's tool-call parser. A template
 * that thinks (reasoning.ts) has its thinking split into a `thinking` block before the text,
 * streamed as `thinking_delta` events; `thinking` turns it on or off. Errors on
 * these paths take Anthropic's shape (anthropic/errors.ts, through `sendApiError`).
 */
import type { RequestHandler, Response } from 'express';

import {
  renderChatPrompt,
  ToolCallStream,
  type ChatPromptPlan,
  type GenerationOptions,
  type GenerationResult,
  type JsonValue,
} from '@mistralrs/core';

import { readCountTokensRequest, readMessagesRequest, type AnthropicChat, type AnthropicMessagesRequest } from '../anthropic/request.js';
import {
  AnthropicEventStream,
  matchedStopSequence,
  newMessageId,
  stopReason,
  THINKING_SIGNATURE,
  toolUseBlocks,
  type AnthropicContentBlock,
  type AnthropicMessage,
} from '../anthropic/response.js';
import { compileRequestGrammar, grammarFailure } from '../constraints.js';
import { invalidRequest, toApiError } from '../errors.js';
import { metricsOf } from '../metrics.js';
import { chatPlan, chatRequestIds, checkPromptFits } from '../prompt.js';
import {
  OutputReasoning,
  reasoningSyntax,
  thinkingTemplateArgs,
  thinkingTurnedOff,
  type ReasoningSplit,
  type ReasoningSyntax,
} from '../reasoning.js';
import { routeModel, type AppContext, type RouteContext } from '../route-context.js';
import { ClientWatch, drainedError } from '../run-choices.js';
import { requireObjectBody } from '../validate.js';

export function anthropicMessagesRoute(app: AppContext): RequestHandler {
  return async (req, res) => {
    const watch = new ClientWatch(res);
    const request = readMessagesRequest(requireObjectBody(req.body), app.limits);
    const ctx = routeModel(app, request.model, res);
    if (request.maxTokens > ctx.engine.contextTokens) {
      throw invalidRequest(
        `max_tokens: ${request.maxTokens} > ${ctx.engine.contextTokens}, which is this model's context length`,
        'max_tokens',
        'integer_above_max_value',
      );
    }
    const plan = planOf(ctx, request);
    const grammar = plan.toolGrammar && (await compileRequestGrammar(ctx.engine, { grammar: plan.toolGrammar, param: 'tool_choice' }));
    let rendered = '';
    const promptIds = await promptIdsOf(ctx, request, plan, (text) => {
      rendered = text;
    });
    checkPromptFits(promptIds, ctx.engine.contextTokens, 'messages');
    // Thinking templates: the thinking apart from the text, unless the request turned it off.
    const syntax = thinkingTurnedOff(plan.templateArgs) ? undefined : reasoningSyntax(plan.template.text(plan.variant));
    const options: GenerationOptions = { ...request.sampling, maxTokens: request.maxTokens, ...(grammar ? { grammar } : {}) };
    if (request.stop) options.stop = request.stop;
    const reasoning = syntax && { syntax, prompt: rendered };
    const run: Run = { ctx, request, plan, promptIds, options, res, watch, id: newMessageId(), reasoning };
    const result = await runMessage(run);
    const completionTokens = result?.usage.completionTokens ?? 0;
    ctx.onCompletionDone?.({
      id: run.id,
      finishReasons: [result?.finishReason ?? 'cancelled'],
      usage: { prompt_tokens: promptIds.length, completion_tokens: completionTokens, total_tokens: promptIds.length + completionTokens },
      clientGone: watch.clientGone,
      endpoint: '/v1/messages',
      stream: request.stream,
      model: ctx.modelId,
    });
  };
}

/** `{input_tokens}`: the prompt `/v1/messages` would give the model, counted. */
export function anthropicCountTokensRoute(app: AppContext): RequestHandler {
  return async (req, res) => {
    const request = readCountTokensRequest(requireObjectBody(req.body), app.limits);
    const ctx = routeModel(app, request.model, res);
    const ids = await promptIdsOf(ctx, request, planOf(ctx, request));
    res.json({ input_tokens: ids.length });
  };
}

/**
 * The chat route's plan: template variant, tools shown or described, a grammar that forces a
 * call; `thinking` as the template's variables (`enable_thinking`, as the chat route sets it).
 */
function planOf(ctx: RouteContext, request: AnthropicChat): ChatPromptPlan {
  const planWith = (templateArgs: Record<string, JsonValue> | undefined) =>
    chatPlan(
      ctx.engine,
      {
        messages: request.messages,
        tools: request.tools,
        toolChoice: request.toolChoice,
        parallelToolCalls: request.parallelToolCalls,
        // A prefill is the assistant's turn begun: no new turn is opened after it.
        addGenerationPrompt: request.prefill === undefined,
        ...(templateArgs ? { templateArgs } : {}),
      },
      { enable_thinking: 'thinking', reasoning_effort: 'thinking' },
    );
  const plain = planWith(undefined);
  if (!request.thinking) return plain;
  const templateArgs = thinkingTemplateArgs(plain.template.text(plain.variant), { enabled: request.thinking.enabled });
  if (!templateArgs) {
    throw invalidRequest(
      "thinking: this model's chat template does not think (it writes no <think> block nor harmony analysis channel), so thinking cannot be enabled",
      'thinking',
      'unsupported_parameter',
    );
  }
  return Object.keys(templateArgs).length > 0 ? planWith(templateArgs) : plain;
}

/**
 * The prompt's tokens, as the chat route makes them. With a prefill, the conversation is
 * rendered with the assistant's last turn and cut right after its text, so the answer
 * continues it (transformers' `continue_final_message`): whatever the template writes to
 * close the turn is left out, and the text is tokenized whole, as one prompt.
 */
function promptIdsOf(
  ctx: RouteContext,
  request: AnthropicChat,
  plan: ChatPromptPlan,
  onRendered?: (text: string) => void,
): Promise<number[]> {
  const { prefill } = request;
  if (prefill === undefined) return chatRequestIds(ctx.engine, plan, onRendered);
  return renderChatPrompt(
    {
      chatTemplate: ctx.engine.chatTemplate,
      encodeChatPromptAsync: (text) => {
        const end = text.lastIndexOf(prefill);
        if (end < 0) {
          throw invalidRequest(
            "messages: this model's chat template does not write the last assistant turn's text as it is, so the answer cannot continue it (prefill)",
            'messages',
            'invalid_chat',
          );
        }
        const prompt = text.slice(0, end + prefill.length);
        onRendered?.(prompt);
        return ctx.engine.encodeChatPromptAsync(prompt);
      },
    },
    plan,
  );
}

interface Run {
  ctx: RouteContext;
  request: AnthropicMessagesRequest;
  plan: ChatPromptPlan;
  promptIds: number[];
  options: GenerationOptions;
  res: Response;
  watch: ClientWatch;
  id: string;
  /** A thinking template's syntax and the rendered prompt (does it open the block?). */
  reasoning: { syntax: ReasoningSyntax; prompt: string } | undefined;
}

/**
 * Generates and answers, whole or streamed; undefined when the client left. As the chat
 * route does: the client's leaving cancels the generation, a draining server's deadline ends
 * it with a 503 (here Anthropic's 529), and the headers of a stream go out with the first
 * token, so that until then a failure can still be a status code.
 */
async function runMessage(run: Run): Promise<GenerationResult | undefined> {
  const { watch, res } = run;
  res.set('request-id', `req_${run.id.slice('msg_'.length)}`);
  if (watch.clientGone) return undefined;
  if (watch.shutdown?.aborted) throw drainedError();
  const stop = () => watch.abort();
  watch.shutdown?.addEventListener('abort', stop, { once: true });
  const events = run.request.stream ? new AnthropicEventStream(res) : undefined;
  try {
    const metrics = metricsOf(res);
    const submittedAt = performance.now();
    const started = run.ctx.engine.complete({ ...run.options, prompt: run.promptIds, signal: watch.signal });
    const generation = metrics ? metrics.observeGeneration(run.ctx.modelId, started, submittedAt) : started;
    const tools = run.plan.toolCallFormat && new ToolCallStream(run.plan.toolCallFormat);
    const split = events && run.reasoning && new OutputReasoning(run.ctx.engine.tokenizer, run.reasoning.syntax, run.reasoning.prompt);
    let text = '';
    let shown = 0;
    /** Streamed: the thinking first, then the text (held back while it may be a tool call). */
    const show = async (parts: ReasoningSplit) => {
      await events!.thinking(parts.reasoning);
      text += parts.content;
      const visible = tools ? tools.push(parts.content) : parts.content;
      shown += visible.length;
      await events!.text(visible);
    };
    const tokenIds: number[] = [];
    for await (const chunk of generation) {
      tokenIds.push(...chunk.tokenIds);
      if (!events) continue;
      await events.start(messageHead(run, []));
      await show(split ? split.push(chunk.text, chunk.tokenIds) : { reasoning: '', content: chunk.text });
    }
    const result = await generation.result;
    metrics?.recordPromptTokens(run.ctx.modelId, run.promptIds.length);
    if (result.finishReason === 'cancelled' && watch.shutdown?.aborted && !watch.clientGone) throw drainedError();
    if (watch.clientGone) return undefined;
    const stopSequence = result.finishReason === 'stop' ? stopSequenceOf(run, result) : null;
    if (!events) {
      const content = contentOf(run, result.text, tokenIds);
      const called = content.some((b) => b.type === 'tool_use');
      res.json({
        ...messageHead(run, content),
        stop_reason: stopReason(result.finishReason, stopSequence, called),
        stop_sequence: called ? null : stopSequence,
        usage: { input_tokens: run.promptIds.length, output_tokens: result.usage.completionTokens },
      });
      return result;
    }
    await events.start(messageHead(run, []));
    if (split) await show(split.finish());
    const finished = tools?.finish();
    const calls = finished && finished.calls.length > 0 ? toolUseBlocks(finished.calls) : undefined;
    await events.text(calls ? (finished?.rest ?? '') : text.slice(shown));
    for (const call of calls ?? []) if (call.type === 'tool_use') await events.toolUse(call);
    const reason = stopReason(result.finishReason, stopSequence, calls !== undefined);
    await events.finish(reason, calls ? null : stopSequence, {
      input_tokens: run.promptIds.length,
      output_tokens: result.usage.completionTokens,
    });
    return result;
  } catch (error) {
    watch.abort();
    if (watch.clientGone) return undefined;
    const apiError = grammarFailure(error, run.options.grammar) ?? toApiError(error);
    // After the headers, an error can only be a last event (the express error handler logs a 5xx).
    if (events?.started) await events.error(apiError);
    throw apiError.status >= 500 ? error : apiError;
  } finally {
    watch.shutdown?.removeEventListener('abort', stop);
  }
}

/** The message before its end: no stop reason yet, the prompt's tokens counted. */
function messageHead(run: Run, content: AnthropicContentBlock[]): AnthropicMessage {
  return {
    id: run.id,
    type: 'message',
    role: 'assistant',
    model: run.ctx.modelId,
    content,
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: run.promptIds.length, output_tokens: 0 },
  };
}

/** A whole output as content blocks: its thinking, its text, then the tool calls read from its text. */
function contentOf(run: Run, output: string, tokenIds: readonly number[]): AnthropicContentBlock[] {
  const split = run.reasoning
    ? OutputReasoning.whole(run.ctx.engine.tokenizer, run.reasoning.syntax, run.reasoning.prompt, output, tokenIds)
    : undefined;
  const text = split ? split.content : output;
  const thinking: AnthropicContentBlock[] = split?.reasoning
    ? [{ type: 'thinking', thinking: split.reasoning, signature: THINKING_SIGNATURE }]
    : [];
  const parsed = run.plan.toolCallFormat?.parse(text);
  const calls = parsed && parsed.calls.length > 0 ? toolUseBlocks(parsed.calls) : undefined;
  const shown = calls ? parsed!.content : text;
  return [...thinking, ...(shown !== '' ? [{ type: 'text' as const, text: shown }] : []), ...(calls ?? [])];
}

/** The stop sequence that ended the output, found in its tokens decoded whole (the text the
 * engine returns stops just before it). */
function stopSequenceOf(run: Run, result: GenerationResult): string | null {
  if (!run.request.stop) return null;
  const full = run.ctx.engine.tokenizer.decode(result.tokenIds, { skipSpecialTokens: true });
  return matchedStopSequence(full, run.request.stop);
}
