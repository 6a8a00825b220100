/**
 * POST /tokenize and POST /detokenize, in vLLM's shapes:
 *   /tokenize   {prompt, add_special_tokens?} or {messages, add_generation_prompt?}
 *               → {tokens, count, max_model_len, token_strs?}
 *   /detokenize {tokens, skip_special_tokens?} → {prompt}
 */
import type { RequestHandler } from 'express';

import { invalidRequest } from '../errors.js';
import { readMessages } from '../messages.js';
import { chatPromptIds } from '../prompt.js';
import { routeModel, validationContext, type AppContext } from '../route-context.js';
import { readBoolean, readString, requireObjectBody } from '../validate.js';

export function tokenizeRoute(app: AppContext): RequestHandler {
  return async (req, res) => {
    const body = requireObjectBody(req.body);
    const ctx = routeModel(app, readString(body, 'model'), res);
    const { tokenizer } = ctx.engine;
    let tokens: number[];
    if (body.messages !== undefined && body.messages !== null) {
      if (body.prompt !== undefined && body.prompt !== null)
        throw invalidRequest('send either prompt or messages, not both', 'prompt', 'conflicting_parameters');
      const addGenerationPrompt = readBoolean(body, 'add_generation_prompt') ?? true;
      // Counting a prompt longer than the context is what /tokenize is for: no bound here.
      tokens = await chatPromptIds(ctx.engine, readMessages(body.messages), addGenerationPrompt);
    } else {
      const prompt = readString(body, 'prompt');
      if (prompt === undefined) throw invalidRequest('prompt (a string) or messages is required', 'prompt', 'missing_required_parameter');
      const addSpecialTokens = readBoolean(body, 'add_special_tokens') ?? true;
      tokens = Array.from(await tokenizer.encodeAsync(prompt, { addSpecialTokens, parseSpecial: false }));
    }
    const withPieces = readBoolean(body, 'return_token_strs') ?? false;
    res.json({
      tokens,
      count: tokens.length,
      max_model_len: ctx.engine.contextTokens,
      ...(withPieces ? { token_strs: tokens.map((id) => tokenizer.tokenToPiece(id)) } : {}),
    });
  };
}

export function detokenizeRoute(app: AppContext): RequestHandler {
  return (req, res) => {
    const body = requireObjectBody(req.body);
    const ctx = routeModel(app, readString(body, 'model'), res);
    const { vocabSize } = validationContext(ctx);
    const tokens = body.tokens;
    if (!Array.isArray(tokens)) throw invalidRequest('tokens must be an array of token ids', 'tokens', 'invalid_type');
    for (const id of tokens) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw invalidRequest(`invalid token id ${JSON.stringify(id)}: out of vocabulary (ids 0 to ${vocabSize - 1})`, 'tokens');
      }
    }
    const skipSpecialTokens = readBoolean(body, 'skip_special_tokens') ?? false;
    res.json({ prompt: ctx.engine.tokenizer.decode(tokens as number[], { skipSpecialTokens }) });
  };
}
