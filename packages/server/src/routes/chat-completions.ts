/** POST /v1/chat/completions: a chat turn, whole or streamed, with tools and constrained output. */
import { randomBytes } from 'node:crypto';

import type { RequestHandler } from 'express';

import { ToolCallStream, type ParsedToolCall, type ToolCallFormat } from '@mistralrs/core';

import { chatTurnGrammar } from '../constraints.js';
import { chatLogprobs } from '../logprobs.js';
import { chatPlan, chatRequestIds, checkPromptFits } from '../prompt.js';
import { OutputReasoning, reasoningSyntax, thinkingTurnedOff, type ReasoningSyntax } from '../reasoning.js';
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
    const grammar = await chatTurnGrammar(ctx.engine, plan.toolGrammar, request.grammar);
    let rendered = '';
    const promptIds = await chatRequestIds(ctx.engine, plan, (text) => {
      rendered = text;
    });
    checkPromptFits(promptIds, ctx.engine.contextTokens, 'messages');
    // Thinking templates: reasoning_content apart from content, unless the request turned it off.
    const syntax = thinkingTurnedOff(plan.templateArgs) ? undefined : reasoningSyntax(plan.template.text(plan.variant));

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
      format: chatFormat(ctx.engine, request.logprobs, plan.toolCallFormat, syntax && { syntax, prompt: rendered }),
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
function chatFormat(
  engine: ServingEngine,
  withLogprobs: boolean,
  toolFormat: ToolCallFormat | undefined,
  reasoning: { syntax: ReasoningSyntax; prompt: string } | undefined,
): ResponseFormat {
  const logprobsOf = (entries: Parameters<typeof chatLogprobs>[1] | undefined) =>
    withLogprobs ? { content: chatLogprobs(engine.tokenizer, entries ?? []) } : null;
  const split = reasoning && reasoningChoices(engine, reasoning.syntax, reasoning.prompt);
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
      const parts = split ? split.push(index, chunk.text, chunk.tokenIds) : { reasoning: '', content: chunk.text };
      const text = streamOf(index)?.push(parts.content) ?? parts.content;
      // A chunk may carry only held-back text (half a character, a possible stop string, a tag).
      if (text === '' && parts.reasoning === '' && !(withLogprobs && chunk.logprobs?.length)) return undefined;
      return { index, delta: delta(parts.reasoning, text), logprobs: logprobsOf(chunk.logprobs), finish_reason: null };
    },
    finalChoices: (index, finishReason) => {
      const held = split?.finish(index);
      const heldText = held && (streamOf(index)?.push(held.content) ?? held.content);
      const heldChoices =
        held && (held.reasoning || heldText)
          ? [{ index, delta: delta(held.reasoning, heldText ?? ''), logprobs: null, finish_reason: null }]
          : [];
      const finished = streamOf(index)?.finish();
      const last = (reason: string) => ({ index, delta: {}, logprobs: null, finish_reason: reason });
      if (!finished) return [...heldChoices, last(finishReason)];
      const rest = [
        ...heldChoices,
        ...(finished.rest ? [{ index, delta: { content: finished.rest }, logprobs: null, finish_reason: null }] : []),
      ];
      if (finished.calls.length === 0) return [...rest, last(finishReason)];
      const calls = { index, delta: { tool_calls: toolCallObjects(finished.calls, true) }, logprobs: null, finish_reason: null };
      return [...rest, calls, last('tool_calls')];
    },
    wholeChoice: ({ index, text: output, tokenIds, finishReason, logprobs }) => {
      const whole = split?.whole(output, tokenIds);
      const text = whole ? whole.content : output;
      // A thinking model's message always has the field (null when it wrote no reasoning).
      const thought = whole ? { reasoning_content: whole.reasoning || null } : {};
      const parsed = toolFormat?.parse(text);
      const called = parsed !== undefined && parsed.calls.length > 0;
      return {
        index,
        message: called
          ? { role: 'assistant', content: parsed.content || null, ...thought, tool_calls: toolCallObjects(parsed.calls, false) }
          : { role: 'assistant', content: text, ...thought },
        logprobs: logprobsOf(logprobs),
        finish_reason: called ? 'tool_calls' : finishReason,
      };
    },
  };
}

/** A stream delta: the reasoning and the content, each only when there is some (content at least ''). */
function delta(reasoning: string, content: string): object {
  return { ...(reasoning ? { reasoning_content: reasoning } : {}), ...(content || !reasoning ? { content } : {}) };
}

/** One reasoning splitter per choice (reasoning.ts's `OutputReasoning`, which decodes gpt-oss's
 * markers from each choice's tokens). */
function reasoningChoices(engine: ServingEngine, syntax: ReasoningSyntax, prompt: string) {
  const choices = new Map<number, OutputReasoning>();
  const choice = (index: number) => {
    let c = choices.get(index);
    if (!c) {
      c = new OutputReasoning(engine.tokenizer, syntax, prompt);
      choices.set(index, c);
    }
    return c;
  };
  return {
    push: (index: number, text: string, tokenIds: readonly number[]) => choice(index).push(text, tokenIds),
    finish: (index: number) => choice(index).finish(),
    /** A whole output, split by a splitter of its own. */
    whole: (text: string, tokenIds: readonly number[]) => OutputReasoning.whole(engine.tokenizer, syntax, prompt, text, tokenIds),
  };
}
