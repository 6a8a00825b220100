/**
 * OpenAI's Responses API: `POST /v1/responses` (whole or streamed as typed events),
 * `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.
 *
 * A response is a chat turn: its input items (after the stored conversation of
 * `previous_response_id`, and `instructions` as a system message) go through the chat route's
 * own preparation (`chatPlan`, tools, grammar, `chatRequestIds`), so the same conversation
 * gives the same prompt and, greedily, the same answer. Responses are kept (unless
 * `store: false`) in a bounded in-memory store (responses/store.ts). `reasoning.effort` is the
 * template's thinking switch (as the chat route's `reasoning_effort`); a thinking template's
 * reasoning comes as a `reasoning` item before the message (reasoning.ts splits it).
 */
import type { RequestHandler } from 'express';

import type { ChatMessage, GenerationOptions, JsonValue } from '@mistralrs/core';

import { chatTurnGrammar } from '../constraints.js';
import { ApiError, invalidRequest, toApiError } from '../errors.js';
import { chatPlan, chatRequestIds, checkPromptFits } from '../prompt.js';
import { reasoningSyntax, thinkingTemplateArgs, thinkingTurnedOff } from '../reasoning.js';
import { generateResponse } from '../responses/generate.js';
import { outputMessages } from '../responses/output.js';
import { newItemId, readResponsesRequest } from '../responses/request.js';
import { ResponseStore, type StoredResponse } from '../responses/store.js';
import { routeModel, validationContext, type AppContext } from '../route-context.js';
import { ClientWatch } from '../run-choices.js';
import { readString, requireObjectBody } from '../validate.js';

export interface ResponsesRoutes {
  create: RequestHandler;
  retrieve: RequestHandler;
  remove: RequestHandler;
  inputItems: RequestHandler;
  store: ResponseStore;
}

export function responsesRoutes(app: AppContext): ResponsesRoutes {
  const store = new ResponseStore({ maxEntries: app.limits.maxStoredResponses, maxBytes: app.limits.maxStoredResponseBytes });
  const stored = (id: string): StoredResponse => {
    const found = store.get(id);
    if (!found)
      throw new ApiError(404, 'invalid_request_error', `no response with id ${JSON.stringify(id)} is stored`, null, 'response_not_found');
    return found;
  };
  const idOf = (params: unknown): string => String((params as { id?: unknown }).id ?? '');

  const create: RequestHandler = async (req, res) => {
    const watch = new ClientWatch(res);
    const body = requireObjectBody(req.body);
    const ctx = routeModel(app, readString(body, 'model'), res);
    const request = readResponsesRequest(body, validationContext(ctx));
    let previous: StoredResponse | undefined;
    if (request.previousResponseId !== undefined) {
      previous = store.get(request.previousResponseId);
      if (!previous) {
        throw new ApiError(
          404,
          'invalid_request_error',
          `previous response with id ${JSON.stringify(request.previousResponseId)} not found (never stored, stored with store: false, deleted, or evicted)`,
          'previous_response_id',
          'previous_response_not_found',
        );
      }
    }
    // Earlier instructions are not carried over (as OpenAI): only this request's lead the prompt.
    const conversation: ChatMessage[] = [...(previous?.conversation ?? []), ...request.input];
    const messages: ChatMessage[] = request.instructions
      ? [{ role: 'system', content: request.instructions }, ...conversation]
      : conversation;
    const tools = request.tools;
    const planWith = (templateArgs: Record<string, JsonValue> | undefined) =>
      asInput(() =>
        chatPlan(
          ctx.engine,
          {
            messages,
            tools: tools?.tools,
            toolChoice: tools?.toolChoice,
            parallelToolCalls: tools?.parallelToolCalls,
            ...(templateArgs ? { templateArgs } : {}),
          },
          { enable_thinking: 'reasoning.effort', reasoning_effort: 'reasoning.effort' },
        ),
      );
    let plan = planWith(undefined);
    const effort = request.reasoningEffort;
    if (effort !== undefined) {
      // The effort as the template's thinking switch: enable_thinking and reasoning_effort, as the template reads them.
      const templateArgs = thinkingTemplateArgs(plan.template.text(plan.variant), { enabled: effort !== 'none', effort });
      if (!templateArgs) {
        throw invalidRequest(
          `reasoning.effort ${JSON.stringify(effort)}: this model's chat template does not think (it writes no <think> block nor harmony analysis channel)`,
          'reasoning.effort',
          'unsupported_parameter',
        );
      }
      if (Object.keys(templateArgs).length > 0) plan = planWith(templateArgs);
    }
    const grammar = await chatTurnGrammar(ctx.engine, plan.toolGrammar, request.grammar);
    let rendered = '';
    const promptIds = await asInputAsync(() =>
      chatRequestIds(ctx.engine, plan, (text) => {
        rendered = text;
      }),
    );
    asInput(() => checkPromptFits(promptIds, ctx.engine.contextTokens, 'messages'));
    // Thinking templates: a reasoning item apart from the message, unless the request turned it off.
    const syntax = thinkingTurnedOff(plan.templateArgs) ? undefined : reasoningSyntax(plan.template.text(plan.variant));

    const options: GenerationOptions = { ...request.sampling };
    if (request.maxOutputTokens !== undefined) options.maxTokens = request.maxOutputTokens;
    if (grammar) options.grammar = grammar;
    const head = { id: newItemId('resp'), createdAt: Math.floor(Date.now() / 1000), modelId: ctx.modelId, request };
    res.set('x-request-id', head.id);
    await generateResponse({
      engine: ctx.engine,
      modelId: ctx.modelId,
      res,
      watch,
      head,
      promptIds,
      options,
      toolFormat: plan.toolCallFormat,
      reasoning: syntax && { syntax, prompt: rendered },
      onFinished: (response, output) => {
        if (!request.store) return;
        store.set(head.id, { response, conversation: [...conversation, ...outputMessages(output)], inputItems: request.inputItems });
      },
    });
  };

  const retrieve: RequestHandler = (req, res) => {
    if (req.query.stream !== undefined && req.query.stream !== 'false') {
      throw invalidRequest('streaming a stored response again is not supported by this server', 'stream', 'unsupported_parameter');
    }
    res.json(stored(idOf(req.params)).response);
  };

  const remove: RequestHandler = (req, res) => {
    const id = idOf(req.params);
    stored(id);
    store.delete(id);
    res.json({ id, object: 'response.deleted', deleted: true });
  };

  /** `limit` (1 to 100, default 20), `order` (`desc` by default, as OpenAI), `after` (an item id). */
  const inputItems: RequestHandler = (req, res) => {
    const items = [...stored(idOf(req.params)).inputItems];
    const query = req.query as Record<string, unknown>;
    const order = query.order ?? 'desc';
    if (order !== 'asc' && order !== 'desc') throw invalidRequest('order must be "asc" or "desc"', 'order', 'invalid_value');
    if (order === 'desc') items.reverse();
    const limit = query.limit === undefined ? 20 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      throw invalidRequest('limit must be an integer from 1 to 100', 'limit', 'invalid_value');
    }
    let start = 0;
    if (query.after !== undefined) {
      start = items.findIndex((item) => item.id === query.after) + 1;
      if (start === 0) throw invalidRequest(`after names no input item of this response`, 'after', 'invalid_value');
    }
    const data = items.slice(start, start + limit);
    res.json({
      object: 'list',
      data,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: start + limit < items.length,
    });
  };

  return { create, retrieve, remove, inputItems, store };
}

/** The chat preparation's errors name `messages`; here the field is `input`. */
function renamed(error: unknown): unknown {
  const api = toApiError(error);
  if (api.status >= 500 || api.param !== 'messages') return error;
  return new ApiError(api.status, api.type, api.message, 'input', api.code, api.headers);
}

function asInput<T>(run: () => T): T {
  try {
    return run();
  } catch (error) {
    throw renamed(error);
  }
}

async function asInputAsync<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw renamed(error);
  }
}
