/** POST /v1/chat/completions: a chat turn, whole or streamed. */
import type { RequestHandler } from 'express';

import { chatLogprobs } from '../logprobs.js';
import { chatPromptIds, checkPromptFits } from '../prompt.js';
import { checkModel, newCompletionId, validationContext, type RouteContext } from '../route-context.js';
import { ClientWatch, choiceJobs, runChoices, type ResponseFormat } from '../run-choices.js';
import type { ServingEngine } from '../serving-engine.js';
import { requireObjectBody, validateChatRequest } from '../validate.js';

export function chatCompletionsRoute(ctx: RouteContext): RequestHandler {
  return async (req, res) => {
    const watch = new ClientWatch(res);
    const request = validateChatRequest(requireObjectBody(req.body), validationContext(ctx));
    checkModel(request.model, ctx);
    const promptIds = await chatPromptIds(ctx.engine, request.messages);
    checkPromptFits(promptIds, ctx.engine.contextTokens, 'messages');

    const jobs = choiceJobs([promptIds], request, request.logprobs ? { logprobs: true, topLogprobs: request.topLogprobs } : {});
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
      format: chatFormat(ctx.engine, request.logprobs),
    });
    ctx.onCompletionDone?.({ ...summary, endpoint: '/v1/chat/completions', stream: request.stream });
  };
}

/** `chat.completion` and `chat.completion.chunk` objects. */
function chatFormat(engine: ServingEngine, withLogprobs: boolean): ResponseFormat {
  const logprobsOf = (entries: Parameters<typeof chatLogprobs>[1] | undefined) =>
    withLogprobs ? { content: chatLogprobs(engine.tokenizer, entries ?? []) } : null;
  return {
    object: 'chat.completion',
    chunkObject: 'chat.completion.chunk',
    openingChoices: (indexes) =>
      indexes.map((index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })),
    deltaChoice: (index, chunk) => {
      // A chunk may carry only held-back text (half a character, a possible stop string).
      if (chunk.text === '' && !(withLogprobs && chunk.logprobs?.length)) return undefined;
      return { index, delta: { content: chunk.text }, logprobs: logprobsOf(chunk.logprobs), finish_reason: null };
    },
    finalChoice: (index, finishReason) => ({ index, delta: {}, logprobs: null, finish_reason: finishReason }),
    wholeChoice: ({ index, text, finishReason, logprobs }) => ({
      index,
      message: { role: 'assistant', content: text },
      logprobs: logprobsOf(logprobs),
      finish_reason: finishReason,
    }),
  };
}
