/** POST /v1/chat/completions: a chat turn, whole or streamed, with tools and constrained output. */
import { randomBytes } from 'node:crypto';

import type { RequestHandler } from 'express';

import { ToolCallStream, type ParsedToolCall, type ToolCallFormat } from '@mistralrs/core';

import { compileRequestGrammar, type RequestedGrammar } from '../constraints.js';
import { invalidRequest } from '../errors.js';
import { chatLogprobs } from '../logprobs.js';
import { chatPlan, chatRequestIds, checkPromptFits } from '../prompt.js';
import { newCompletionId, routeModel, validationContext, type AppContext } from '../route-context.js';
import { ClientWatch, choiceJobs, runChoices, type ResponseFormat } from '../run-choices.js';
import type { ServingEngine } from '../serving-engine.js';
import { readString, requireObjectBody, validateChatRequest } from '../validate.js';

export function chatCompletionsRoute(app: AppContext): RequestHandler {
  return async (req, res) => {
    const watch = new ClientWatch(res);
    const body = requireObjectBody(req.body);
    // The model first: the request is checked against its vocabulary and context.
    const ctx = routeModel(app, readString(body, 'model'), res);
    const request = validateChatRequest(body, validationContext(ctx));
    const tools = request.tools;
    // The same preparation as Engine.chat: variant, tool plan, template variables, render.
    const plan = chatPlan(
      ctx.engine,
      {
        messages: request.messages,
        tools: tools?.tools,
        toolChoice: tools?.toolChoice,
        parallelToolCalls: tools?.parallelToolCalls,
        templateArgs: request.templateArgs.values,
      },
      request.templateArgs.params,
    );
    if (plan.toolGrammar && request.grammar) {
      throw invalidRequest(
        `tool_choice forces a tool call; it cannot be combined with ${request.grammar.param}`,
        'tool_choice',
        'conflicting_parameters',
      );
    }
    const requested: RequestedGrammar | undefined = plan.toolGrammar
      ? { grammar: plan.toolGrammar, param: 'tool_choice' }
      : request.grammar;
    const grammar = requested && (await compileRequestGrammar(ctx.engine, requested));
    const promptIds = await chatRequestIds(ctx.engine, plan);
    checkPromptFits(promptIds, ctx.engine.contextTokens, 'messages');

    const jobs = choiceJobs([promptIds], request, {
      ...(request.logprobs ? { logprobs: true, topLogprobs: request.topLogprobs } : {}),
      ...(grammar ? { grammar } : {}),
    });
    const summary = await runChoices({
      engine: ctx.engine,
      res,
      watch,
      id: newCompletionId('chatcmpl'),
      modelId: ctx.modelId,
      jobs,
      promptTokens: promptIds.length,
      stream: request.stream,
      includeUsage: request.includeUsage,
      format: chatFormat(ctx.engine, request.logprobs, plan.toolCallFormat),
    });
    ctx.onCompletionDone?.({ ...summary, endpoint: '/v1/chat/completions', stream: request.stream, model: ctx.modelId });
  };
}

/** OpenAI's `tool_calls` entries (streamed ones also carry their index). */
function toolCallObjects(calls: readonly ParsedToolCall[], streamed: boolean): object[] {
  return calls.map((call, index) => ({
    ...(streamed ? { index } : {}),
    id: `call_${randomBytes(12).toString('hex')}`,
    type: 'function',
    function: { name: call.name, arguments: call.arguments },
  }));
}

/** `chat.completion` and `chat.completion.chunk` objects; with tools, calls in the output
 * become `tool_calls` (streamed: text that may open a call is held until the end). */
function chatFormat(engine: ServingEngine, withLogprobs: boolean, toolFormat: ToolCallFormat | undefined): ResponseFormat {
  const logprobsOf = (entries: Parameters<typeof chatLogprobs>[1] | undefined) =>
    withLogprobs ? { content: chatLogprobs(engine.tokenizer, entries ?? []) } : null;
  const streams = new Map<number, ToolCallStream>();
  const streamOf = (index: number) => {
    let s = streams.get(index);
    if (!s && toolFormat) {
      s = new ToolCallStream(toolFormat);
      streams.set(index, s);
    }
    return s;
  };
  return {
    object: 'chat.completion',
    chunkObject: 'chat.completion.chunk',
    openingChoices: (indexes) =>
      indexes.map((index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })),
    deltaChoice: (index, chunk) => {
      const text = streamOf(index)?.push(chunk.text) ?? chunk.text;
      // A chunk may carry only held-back text (half a character, a possible stop string).
      if (text === '' && !(withLogprobs && chunk.logprobs?.length)) return undefined;
      return { index, delta: { content: text }, logprobs: logprobsOf(chunk.logprobs), finish_reason: null };
    },
    finalChoices: (index, finishReason) => {
      const finished = streamOf(index)?.finish();
      const last = (reason: string) => ({ index, delta: {}, logprobs: null, finish_reason: reason });
      if (!finished) return [last(finishReason)];
      const rest = finished.rest ? [{ index, delta: { content: finished.rest }, logprobs: null, finish_reason: null }] : [];
      if (finished.calls.length === 0) return [...rest, last(finishReason)];
      const calls = { index, delta: { tool_calls: toolCallObjects(finished.calls, true) }, logprobs: null, finish_reason: null };
      return [...rest, calls, last('tool_calls')];
    },
    wholeChoice: ({ index, text, finishReason, logprobs }) => {
      const parsed = toolFormat?.parse(text);
      const called = parsed !== undefined && parsed.calls.length > 0;
      return {
        index,
        message: called
          ? { role: 'assistant', content: parsed.content || null, tool_calls: toolCallObjects(parsed.calls, false) }
          : { role: 'assistant', content: text },
        logprobs: logprobsOf(logprobs),
        finish_reason: called ? 'tool_calls' : finishReason,
      };
    },
  };
}
