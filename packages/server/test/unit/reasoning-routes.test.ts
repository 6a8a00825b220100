/**
 * The model's thinking on the Anthropic Messages and Responses routes, split by the chat
 * route's splitter (reasoning.ts) over the real Qwen 3 template (test/fixtures/chat-templates)
 * and a scripted engine that writes a think block: whole and streamed (the deltas concatenate
 * to the whole), `</think>` split across chunks, thinking turned off leaving everything in the
 * text, and the requests' switches (`thinking`, `reasoning.effort`) reaching the template.
 */
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { fileURLToPath } from 'node:url';

import Anthropic from '@anthropic-ai/sdk';
import { ChatTemplate, defaultRenderSandbox } from '@mistralrs/core';
import OpenAI from 'openai';

import { createApp, type ServingEngine } from '../../src/index.js';
import { closeApp, fakeEngine, listenOnLoopback, type CompleteCall, type Step } from './fake-engine.js';

const templatePath = (name: string) => fileURLToPath(new URL(`../fixtures/chat-templates/${name}.jinja`, import.meta.url));

afterEach(closeApp);
afterAll(() => defaultRenderSandbox().close());

/** gpt-oss's markers: special tokens, left out of the engine's text, kept by a decoder that keeps specials. */
const SPECIAL: Record<string, number> = { '<|channel|>': 200, '<|message|>': 201, '<|end|>': 202, '<|start|>': 203, '<|return|>': 204 };
const SPECIAL_TEXT = new Map(Object.entries(SPECIAL).map(([text, id]) => [id, text]));

/** One chunk per piece; each character one token, each marker one special token. */
const chunks = (...pieces: string[]): Step[] =>
  pieces.map((piece) => {
    const parts = piece.split(/(<\|[a-z]+\|>)/).filter((p) => p !== '');
    const tokenIds = parts.flatMap((p) => (SPECIAL[p] !== undefined ? [SPECIAL[p]] : [...p].map((c) => c.charCodeAt(0))));
    return { chunk: { text: parts.filter((p) => SPECIAL[p] === undefined).join(''), tokenIds } };
  });

const TEMPLATES = { qwen3: { eosToken: '<|im_end|>' }, 'gpt-oss': { eosToken: '<|return|>' } } as const;

/** A server whose engine writes `output`, with a fixture template (or the fake's own, which does not think). */
async function serve(output: string[], calls: CompleteCall[] = [], template: keyof typeof TEMPLATES | 'none' = 'qwen3'): Promise<string> {
  const engine = fakeEngine(() => chunks(...output), calls);
  const fields: Record<string, unknown> = { contextTokens: 1 << 20 };
  if (template !== 'none') fields.chatTemplate = await ChatTemplate.fromFile(templatePath(template), TEMPLATES[template]);
  Object.assign(engine, fields);
  Object.assign(engine.tokenizer, {
    createDecoder: () => ({
      push: (id: number) => SPECIAL_TEXT.get(id) ?? String.fromCharCode(id),
      flush: () => '',
    }),
  });
  return listenOnLoopback(createApp({ engine: engine as ServingEngine, modelId: 'qwen3' }));
}

const promptText = (call: CompleteCall) => String.fromCharCode(...call.prompt);
const HARMONY = [
  '<|channel|>',
  'analysis',
  '<|message|>',
  'User asks capital.',
  '<|end|>',
  '<|start|>',
  'assistant',
  '<|channel|>',
  'final',
  '<|message|>',
  'Paris',
  '.',
];
const THINKING = ['<think>', '\n', 'The user asks', ' for a capital.', '\n', '</th', 'ink>', '\n\n', 'Paris', '.'];

async function post(url: string, path: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/** Server-sent events: `event:` name and parsed data. */
async function events(response: Response): Promise<Array<{ event: string; data: Record<string, unknown> }>> {
  expect(response.status).toBe(200);
  return (await response.text())
    .split('\n\n')
    .filter((frame) => frame.includes('data: {'))
    .map((frame) => {
      const event = /^event: (.*)$/m.exec(frame)?.[1] ?? '';
      const data = JSON.parse(/^data: (.*)$/m.exec(frame)![1]!) as Record<string, unknown>;
      return { event, data };
    });
}

describe('Anthropic Messages: thinking blocks', () => {
  const request = (fields: Record<string, unknown> = {}) => ({
    model: 'qwen3',
    max_tokens: 2048,
    messages: [{ role: 'user', content: 'What is the capital of France?' }],
    ...fields,
  });

  it('a thinking block (empty signature) before the text, whole', async () => {
    const url = await serve(THINKING);
    const response = await post(url, '/v1/messages', request({ thinking: { type: 'enabled', budget_tokens: 1024 } }));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { content: unknown[]; usage: { output_tokens: number } };
    expect(body.content).toEqual([
      { type: 'thinking', thinking: 'The user asks for a capital.', signature: '' },
      { type: 'text', text: 'Paris.' },
    ]);
    expect(body.usage.output_tokens).toBe(THINKING.join('').length);
  });

  it('streamed: thinking_delta events and a signature_delta in block 0, then the text in block 1', async () => {
    const url = await serve(THINKING);
    const all = await events(await post(url, '/v1/messages', request({ stream: true })));
    const starts = all.filter((e) => e.event === 'content_block_start').map((e) => e.data);
    expect(starts).toEqual([
      { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
      { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } },
    ]);
    const deltas = all
      .filter((e) => e.event === 'content_block_delta')
      .map((e) => e.data as { index: number; delta: Record<string, string> });
    const thinking = deltas.filter((d) => d.delta.type === 'thinking_delta').map((d) => d.delta.thinking);
    expect(thinking.join('')).toBe('The user asks for a capital.');
    expect(
      deltas
        .filter((d) => d.delta.type === 'text_delta')
        .map((d) => d.delta.text)
        .join(''),
    ).toBe('Paris.');
    expect(deltas.every((d) => d.index === (d.delta.type === 'text_delta' ? 1 : 0))).toBe(true);
    // The signature ends the thinking block, before its stop.
    const names = all.map((e) => `${e.event}:${(e.data.delta as { type?: string } | undefined)?.type ?? ''}`);
    expect(names.indexOf('content_block_delta:signature_delta')).toBe(names.indexOf('content_block_stop:') - 1);
    for (const d of deltas) expect(JSON.stringify(d.delta)).not.toMatch(/<\/?th/);
  });

  it('gpt-oss: the analysis channel is the thinking block, the final channel the text (whole and streamed)', async () => {
    const url = await serve(HARMONY, [], 'gpt-oss');
    const whole = (await (await post(url, '/v1/messages', request())).json()) as { content: unknown[] };
    expect(whole.content).toEqual([
      { type: 'thinking', thinking: 'User asks capital.', signature: '' },
      { type: 'text', text: 'Paris.' },
    ]);
    const all = await events(await post(url, '/v1/messages', request({ stream: true })));
    const deltas = all.filter((e) => e.event === 'content_block_delta').map((e) => e.data.delta as Record<string, string>);
    expect(deltas.map((d) => d.thinking ?? '').join('')).toBe('User asks capital.');
    expect(deltas.map((d) => d.text ?? '').join('')).toBe('Paris.');
  });

  it('thinking disabled: the template closes the block, and all the output is text', async () => {
    const calls: CompleteCall[] = [];
    const url = await serve(THINKING, calls);
    const response = await post(url, '/v1/messages', request({ thinking: { type: 'disabled' } }));
    const body = (await response.json()) as { content: unknown[] };
    expect(promptText(calls[0]!).endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
    expect(body.content).toEqual([{ type: 'text', text: THINKING.join('') }]);
    const all = await events(await post(url, '/v1/messages', request({ stream: true, thinking: { type: 'disabled' } })));
    expect(all.some((e) => (e.data.content_block as { type?: string } | undefined)?.type === 'thinking')).toBe(false);
  });

  it('enabled thinking reaches the template (enable_thinking: true), and count_tokens takes it too', async () => {
    const calls: CompleteCall[] = [];
    const url = await serve(THINKING, calls);
    await post(url, '/v1/messages', request({ thinking: { type: 'enabled', budget_tokens: 1024 } }));
    expect(promptText(calls[0]!).endsWith('<|im_start|>assistant\n')).toBe(true);
    const off = (await (
      await post(url, '/v1/messages/count_tokens', { ...request({ thinking: { type: 'disabled' } }), max_tokens: undefined })
    ).json()) as { input_tokens: number };
    const on = (await (await post(url, '/v1/messages/count_tokens', { ...request(), max_tokens: undefined })).json()) as {
      input_tokens: number;
    };
    expect(off.input_tokens - on.input_tokens).toBe('<think>\n\n</think>\n\n'.length);
  });

  it("an earlier answer's thinking blocks are accepted back and dropped", async () => {
    const calls: CompleteCall[] = [];
    const url = await serve(['Berlin.'], calls);
    const response = await post(
      url,
      '/v1/messages',
      request({
        messages: [
          { role: 'user', content: 'Capital of France?' },
          {
            role: 'assistant',
            content: [
              { type: 'thinking', thinking: 'secret musings', signature: '' },
              { type: 'redacted_thinking', data: 'abc' },
              { type: 'text', text: 'Paris.' },
            ],
          },
          { role: 'user', content: 'And Germany?' },
        ],
      }),
    );
    expect(response.status).toBe(200);
    expect(promptText(calls[0]!)).not.toContain('secret musings');
    expect(promptText(calls[0]!)).toContain('Paris.');
  });

  it.each([
    [{ type: 'enabled', budget_tokens: 1000 }, 'thinking.budget_tokens'],
    [{ type: 'enabled', budget_tokens: 2048 }, 'thinking.budget_tokens'], // not below max_tokens
    [{ type: 'enabled' }, 'thinking.budget_tokens'],
    [{ type: 'enabled', budget_tokens: 'lots' }, 'thinking.budget_tokens'],
    [{ type: 'sometimes' }, 'thinking.type'],
    [{ type: 'disabled', budget_tokens: 1024 }, 'thinking.budget_tokens'],
    ['on', 'thinking'],
  ])('thinking %j is a 400 naming %s', async (thinking, param) => {
    const url = await serve(THINKING);
    const response = await post(url, '/v1/messages', request({ thinking }));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { type: string; error: { type: string; message: string } };
    expect(body.type).toBe('error');
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message.startsWith(`${param}:`)).toBe(true);
  });

  it('a template that does not think: thinking enabled is a clear 400, disabled is accepted', async () => {
    const url = await serve(['Paris.'], [], 'none');
    const response = await post(url, '/v1/messages', request({ thinking: { type: 'enabled', budget_tokens: 1024 } }));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/^thinking: this model's chat template does not think/);
    const off = await post(url, '/v1/messages', request({ thinking: { type: 'disabled' } }));
    expect(off.status).toBe(200);
    expect(((await off.json()) as { content: unknown[] }).content).toEqual([{ type: 'text', text: 'Paris.' }]);
  });
});

describe('Responses: a reasoning item before the message', () => {
  const request = (fields: Record<string, unknown> = {}) => ({ model: 'qwen3', input: 'What is the capital of France?', ...fields });
  interface Item {
    id: string;
    type: string;
    status?: string;
    summary?: unknown[];
    content?: Array<{ type: string; text: string }>;
  }

  it('whole: a reasoning item (reasoning_text content, empty summary), then the message; the effort echoed', async () => {
    const url = await serve(THINKING);
    const response = await post(url, '/v1/responses', request({ reasoning: { effort: 'high', summary: null } }));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { output: Item[]; reasoning: unknown; output_text?: string };
    expect(body.output.map((i) => i.type)).toEqual(['reasoning', 'message']);
    const [reasoning, message] = body.output;
    expect(reasoning).toEqual({
      id: expect.stringMatching(/^rs_/),
      type: 'reasoning',
      status: 'completed',
      summary: [],
      content: [{ type: 'reasoning_text', text: 'The user asks for a capital.' }],
    });
    expect(message!.content).toEqual([{ type: 'output_text', text: 'Paris.', annotations: [], logprobs: [] }]);
    expect(body.reasoning).toEqual({ effort: 'high', summary: null });
  });

  it('streamed: the reasoning item and its reasoning_text deltas, done, then the message item', async () => {
    const url = await serve(THINKING);
    const all = await events(await post(url, '/v1/responses', request({ stream: true })));
    const types = all.map((e) => e.event);
    const reasoningDeltas = all.filter((e) => e.event === 'response.reasoning_text.delta').map((e) => e.data.delta as string);
    expect(reasoningDeltas.join('')).toBe('The user asks for a capital.');
    const textDeltas = all.filter((e) => e.event === 'response.output_text.delta').map((e) => e.data.delta as string);
    expect(textDeltas.join('')).toBe('Paris.');
    // The reasoning item is whole before the message item opens.
    const added = all.filter((e) => e.event === 'response.output_item.added').map((e) => e.data.item as Item);
    expect(added.map((i) => i.type)).toEqual(['reasoning', 'message']);
    expect(types.indexOf('response.reasoning_text.done')).toBeLessThan(types.lastIndexOf('response.output_item.added'));
    const done = all.find((e) => e.event === 'response.reasoning_text.done')!.data;
    expect(done).toMatchObject({ output_index: 0, content_index: 0, text: 'The user asks for a capital.' });
    const partAdded = all.find((e) => e.event === 'response.content_part.added')!.data;
    expect(partAdded.part).toEqual({ type: 'reasoning_text', text: '' });
    // The completed response is the whole one.
    const completed = all.at(-1)!.data.response as { output: Item[] };
    expect(completed.output.map((i) => [i.type, i.content?.[0]?.text])).toEqual([
      ['reasoning', 'The user asks for a capital.'],
      ['message', 'Paris.'],
    ]);
    for (const d of [...reasoningDeltas, ...textDeltas]) expect(d).not.toMatch(/<\/?th/);
  });

  it('gpt-oss: the analysis channel is the reasoning item; the effort reaches the template as reasoning_effort', async () => {
    const calls: CompleteCall[] = [];
    const url = await serve(HARMONY, calls, 'gpt-oss');
    const whole = (await (await post(url, '/v1/responses', request({ reasoning: { effort: 'high' } }))).json()) as { output: Item[] };
    expect(promptText(calls[0]!)).toContain('Reasoning: high');
    expect(whole.output.map((i) => [i.type, i.content?.[0]?.text])).toEqual([
      ['reasoning', 'User asks capital.'],
      ['message', 'Paris.'],
    ]);
    const all = await events(await post(url, '/v1/responses', request({ stream: true, reasoning: { effort: 'low' } })));
    expect(promptText(calls[1]!)).toContain('Reasoning: low');
    const delta = (type: string) =>
      all
        .filter((e) => e.event === type)
        .map((e) => e.data.delta as string)
        .join('');
    expect(delta('response.reasoning_text.delta')).toBe('User asks capital.');
    expect(delta('response.output_text.delta')).toBe('Paris.');
  });

  it('cut short while thinking: the reasoning item is incomplete, the message empty', async () => {
    const url = await serve(['<think>\n', 'Let me think', ' about France']);
    const whole = (await (await post(url, '/v1/responses', request())).json()) as { status: string; output: Item[] };
    expect(whole.status).toBe('incomplete');
    expect(whole.output.map((i) => [i.type, i.status, i.content?.[0]?.text])).toEqual([
      ['reasoning', 'incomplete', 'Let me think about France'],
      ['message', 'incomplete', ''],
    ]);
    const all = await events(await post(url, '/v1/responses', request({ stream: true })));
    const last = all.at(-1)!.data.response as { status: string; output: Item[] };
    expect(last.status).toBe('incomplete');
    expect(last.output.map((i) => [i.type, i.status, i.content?.[0]?.text])).toEqual([
      ['reasoning', 'incomplete', 'Let me think about France'],
      ['message', 'incomplete', ''],
    ]);
  });

  it('effort none: the template closes the block, no reasoning item, all the output in the message', async () => {
    const calls: CompleteCall[] = [];
    const url = await serve(THINKING, calls);
    const body = (await (await post(url, '/v1/responses', request({ reasoning: { effort: 'none' } }))).json()) as { output: Item[] };
    expect(promptText(calls[0]!).endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
    expect(body.output.map((i) => [i.type, i.content?.[0]?.text])).toEqual([['message', THINKING.join('')]]);
    const all = await events(await post(url, '/v1/responses', request({ stream: true, reasoning: { effort: 'none' } })));
    expect(all.some((e) => e.event.startsWith('response.reasoning_text'))).toBe(false);
  });

  it('a reasoning item sent back in input is accepted, listed, and not given to the template', async () => {
    const calls: CompleteCall[] = [];
    const url = await serve(['Berlin.'], calls);
    const response = await post(
      url,
      '/v1/responses',
      request({
        input: [
          { role: 'user', content: 'Capital of France?' },
          { type: 'reasoning', id: 'rs_1', summary: [], content: [{ type: 'reasoning_text', text: 'secret musings' }] },
          { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Paris.' }] },
          { role: 'user', content: 'And Germany?' },
        ],
      }),
    );
    expect(response.status).toBe(200);
    expect(promptText(calls[0]!)).not.toContain('secret musings');
    expect(promptText(calls[0]!)).toContain('Paris.');
  });

  it.each([
    [{ effort: 'high', summary: 'detailed' }, 'reasoning.summary', 'unsupported_parameter'],
    [{ summary: 'auto' }, 'reasoning.summary', 'unsupported_parameter'],
    [{ generate_summary: 'concise' }, 'reasoning.generate_summary', 'unsupported_parameter'],
    [{ effort: 'maximal' }, 'reasoning.effort', 'invalid_value'],
    [{ colour: 'blue' }, 'reasoning.colour', 'unsupported_parameter'],
    ['high', 'reasoning', 'invalid_type'],
  ])('reasoning %j is a 400 naming %s', async (reasoning, param, code) => {
    const url = await serve(THINKING);
    const response = await post(url, '/v1/responses', request({ reasoning }));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { param: string; code: string } };
    expect(body.error).toMatchObject({ param, code });
  });

  it('a template that does not think: an effort is a clear 400, none is accepted', async () => {
    const url = await serve(['Paris.'], [], 'none');
    const response = await post(url, '/v1/responses', request({ reasoning: { effort: 'low' } }));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { param: string; code: string; message: string } };
    expect(body.error).toMatchObject({ param: 'reasoning.effort', code: 'unsupported_parameter' });
    expect(body.error.message).toMatch(/does not think/);
    expect((await post(url, '/v1/responses', request({ reasoning: { effort: 'none' } }))).status).toBe(200);
  });
});

describe("the official clients' view", () => {
  it('@anthropic-ai/sdk: messages.stream builds the thinking block (thinking and signature events) and the text', async () => {
    const url = await serve(THINKING);
    const client = new Anthropic({ baseURL: url, apiKey: 'unused', maxRetries: 0 });
    const thoughts: string[] = [];
    const signatures: string[] = [];
    const stream = client.messages
      .stream({
        model: 'qwen3',
        max_tokens: 2048,
        thinking: { type: 'enabled', budget_tokens: 1024 },
        messages: [{ role: 'user', content: 'What is the capital of France?' }],
      })
      .on('thinking', (delta) => thoughts.push(delta))
      .on('signature', (signature) => signatures.push(signature));
    const message = await stream.finalMessage();
    expect(message.content).toEqual([
      { type: 'thinking', thinking: 'The user asks for a capital.', signature: '' },
      { type: 'text', text: 'Paris.' },
    ]);
    expect(thoughts.join('')).toBe('The user asks for a capital.');
    expect(signatures).toEqual(['']);
    // The answer goes back as the SDK hands it over, thinking block included.
    const next = await client.messages.create({
      model: 'qwen3',
      max_tokens: 2048,
      messages: [
        { role: 'user', content: 'What is the capital of France?' },
        { role: 'assistant', content: message.content },
        { role: 'user', content: 'Thanks.' },
      ],
    });
    expect(next.content.map((b) => b.type)).toEqual(['thinking', 'text']);
  });

  it('openai: responses.stream gives the reasoning item and output_text; responses.create the same', async () => {
    const url = await serve(THINKING);
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = client.responses.stream({ model: 'qwen3', input: 'What is the capital of France?', reasoning: { effort: 'medium' } });
    const deltas: string[] = [];
    stream.on('response.reasoning_text.delta', (event) => deltas.push(event.delta));
    const streamed = await stream.finalResponse();
    const whole = await client.responses.create({
      model: 'qwen3',
      input: 'What is the capital of France?',
      reasoning: { effort: 'medium' },
    });
    for (const response of [streamed, whole]) {
      expect(response.output_text).toBe('Paris.');
      const reasoning = response.output[0];
      expect(reasoning?.type).toBe('reasoning');
      if (reasoning?.type === 'reasoning') {
        expect(reasoning.summary).toEqual([]);
        expect(reasoning.content).toEqual([{ type: 'reasoning_text', text: 'The user asks for a capital.' }]);
      }
      expect(response.reasoning).toEqual({ effort: 'medium', summary: null });
    }
    expect(deltas.join('')).toBe('The user asks for a capital.');
    const refused = await client.responses
      .create({ model: 'qwen3', input: 'hi', reasoning: { effort: 'high', summary: 'detailed' } })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OpenAI.APIError);
    expect(refused).toMatchObject({ status: 400, param: 'reasoning.summary', code: 'unsupported_parameter' });
  });
});
