/** POST /v1/completions: the legacy text completion, whole or streamed. */
import type { RequestHandler } from 'express';

import { compileRequestGrammar } from '../constraints.js';
import { completionLogprobs } from '../logprobs.js';
import { checkPromptFits, textPromptIds } from '../prompt.js';
import { newCompletionId, routeModel, validationContext, type AppContext } from '../route-context.js';
import { ClientWatch, choiceJobs, runChoices, type ResponseFormat } from '../run-choices.js';
import type { ServingEngine } from '../serving-engine.js';
import { readString, requireObjectBody, validateCompletionRequest } from '../validate.js';

export function completionsRoute(app: AppContext): RequestHandler {
  return async (req, res) => {
    const watch = new ClientWatch(res);
    const body = requireObjectBody(req.body);
    // The model first: the request is checked against its vocabulary and context.
    const ctx = routeModel(app, readString(body, 'model'), res);
    const request = validateCompletionRequest(body, validationContext(ctx));
    const context = ctx.engine.contextTokens;
    const prompts: number[][] = [];
    for (const prompt of request.prompts) {
      const ids = await textPromptIds(ctx.engine, prompt);
      checkPromptFits(ids, context, 'prompt');
      prompts.push(ids);
    }

    const withLogprobs = request.logprobs !== undefined;
    const grammar = request.grammar && (await compileRequestGrammar(ctx.engine, request.grammar));
    const jobs = choiceJobs(prompts, request, {
      ...(withLogprobs ? { logprobs: true, topLogprobs: request.logprobs } : {}),
      ...(grammar ? { grammar } : {}),
    });
    const summary = await runChoices({
      engine: ctx.engine,
      res,
      watch,
      id: newCompletionId('cmpl'),
      modelId: ctx.modelId,
      jobs,
      promptTokens: prompts.reduce((sum, ids) => sum + ids.length, 0),
      stream: request.stream,
      includeUsage: request.includeUsage,
      format: completionFormat(ctx.engine, withLogprobs),
    });
    ctx.onCompletionDone?.({ ...summary, endpoint: '/v1/completions', stream: request.stream, model: ctx.modelId });
  };
}

/** `text_completion` objects, streamed or not (OpenAI uses the one name for both). */
function completionFormat(engine: ServingEngine, withLogprobs: boolean): ResponseFormat {
  return {
    object: 'text_completion',
    chunkObject: 'text_completion',
    openingChoices: () => undefined,
    deltaChoice: (index, chunk, textOffset) => {
      if (chunk.text === '' && !(withLogprobs && chunk.logprobs?.length)) return undefined;
      const logprobs = withLogprobs ? completionLogprobs(engine.tokenizer, chunk.logprobs ?? [], textOffset) : null;
      return { index, text: chunk.text, logprobs, finish_reason: null };
    },
    finalChoices: (index, finishReason) => [{ index, text: '', logprobs: null, finish_reason: finishReason }],
    wholeChoice: ({ index, text, finishReason, logprobs }) => ({
      index,
      text,
      logprobs: withLogprobs ? completionLogprobs(engine.tokenizer, logprobs) : null,
      finish_reason: finishReason,
    }),
  };
}
