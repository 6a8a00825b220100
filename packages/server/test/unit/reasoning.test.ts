/**
 * reasoning_content apart from content, with the real chat templates of thinking model
 * families (test/fixtures/chat-templates) and a scripted engine that writes thinking text:
 * whole and streamed (the deltas concatenate to the whole), a prompt that opens the block
 * itself (DeepSeek R1 distills), `</think>` split across tokens, enable_thinking=false leaving
 * everything in content, gpt-oss's harmony channels (markers that are special tokens), and
 * reasoning_effort reaching the template. Usage and finish reasons stay the engine's.
 */
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { fileURLToPath } from 'node:url';

import { ChatTemplate, defaultRenderSandbox } from '@mistralrs/core';

import { createApp, type ServingEngine } from '../../src/index.js';
import { HarmonySplitter, ThinkSplitter, reasoningSyntax, type ReasoningSplitter } from '../../src/reasoning.js';
import { closeApp, fakeEngine, listenOnLoopback, type CompleteCall, type Step } from './fake-engine.js';

const templatePath = (name: string) => fileURLToPath(new URL(`../fixtures/chat-templates/${name}.jinja`, import.meta.url));
const FAMILIES = {
  qwen3: { eosToken: '<|im_end|>' },
  smollm3: { eosToken: '<|im_end|>' },
  'deepseek-r1-distill-qwen': { bosToken: '<｜begin▁of▁sentence｜>', eosToken: '<｜end▁of▁sentence｜>' },
  'gpt-oss': { eosToken: '<|return|>' },
} as const;
type Family = keyof typeof FAMILIES;

afterEach(closeApp);
afterAll(() => defaultRenderSandbox().close());

/** gpt-oss's markers: special tokens, left out of the engine's text, kept by a decoder that keeps specials. */
const SPECIAL: Record<string, number> = { '<|channel|>': 200, '<|message|>': 201, '<|end|>': 202, '<|start|>': 203, '<|return|>': 204 };
const SPECIAL_TEXT = new Map(Object.entries(SPECIAL).map(([text, id]) => [id, text]));

/** One chunk per piece; each character one token, each marker one special token. */
function chunks(...pieces: string[]): Step[] {
  return pieces.map((piece) => {
    const parts = piece.split(/(<\|[a-z]+\|>)/).filter((p) => p !== '');
    const tokenIds = parts.flatMap((p) => (SPECIAL[p] !== undefined ? [SPECIAL[p]] : [...p].map((c) => c.charCodeAt(0))));
    return { chunk: { text: parts.filter((p) => SPECIAL[p] === undefined).join(''), tokenIds } };
  });
}

async function serve(family: Family, script: Step[], calls: CompleteCall[] = []): Promise<string> {
  const engine = fakeEngine(() => script, calls);
  const chatTemplate = await ChatTemplate.fromFile(templatePath(family), FAMILIES[family]);
  Object.assign(engine, { chatTemplate, contextTokens: 1 << 20 });
  Object.assign(engine.tokenizer, {
    createDecoder: ({ skipSpecialTokens = false }: { skipSpecialTokens?: boolean } = {}) => ({
      push: (id: number) => SPECIAL_TEXT.get(id) ?? (id >= 200 ? '' : String.fromCharCode(id)),
      flush: () => '',
      skipSpecialTokens,
    }),
  });
  return listenOnLoopback(createApp({ engine: engine as ServingEngine, modelId: family }));
}

const messages = [{ role: 'user', content: 'What is the capital of France?' }];

interface WholeBody {
  choices: Array<{ message: { content: string | null; reasoning_content?: string | null }; finish_reason: string }>;
  usage: { completion_tokens: number };
}
interface Delta {
  content?: string;
  reasoning_content?: string;
}

async function whole(url: string, fields: Record<string, unknown> = {}): Promise<WholeBody> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages, ...fields }),
  });
  expect(response.status).toBe(200);
  return (await response.json()) as WholeBody;
}

async function streamed(url: string, fields: Record<string, unknown> = {}) {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages, stream: true, stream_options: { include_usage: true }, ...fields }),
  });
  expect(response.status).toBe(200);
  const events = (await response.text())
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)) as { choices: Array<{ delta: Delta; finish_reason: string | null }>; usage?: unknown });
  const deltas = events.flatMap((e) => e.choices.map((c) => c.delta));
  return {
    deltas,
    reasoning: deltas.map((d) => d.reasoning_content ?? '').join(''),
    content: deltas.map((d) => d.content ?? '').join(''),
    hasReasoningField: deltas.some((d) => 'reasoning_content' in d),
    finishReason: events.flatMap((e) => e.choices).at(-1)?.finish_reason,
    usage: events.at(-1)?.usage as { completion_tokens: number },
  };
}

/** The prompt the engine was given, back as text (the fake's ids are character codes). */
const promptText = (call: CompleteCall) => String.fromCharCode(...call.prompt);

/** Whole and streamed, the same split; the usage counts every generated token. */
async function expectSplit(url: string, expected: { reasoning: string | null; content: string }, outputChars: number, fields = {}) {
  const body = await whole(url, fields);
  expect(body.choices[0]!.message).toEqual({ role: 'assistant', content: expected.content, reasoning_content: expected.reasoning });
  expect(body.usage.completion_tokens).toBe(outputChars);
  const s = await streamed(url, fields);
  expect({ reasoning: s.reasoning || null, content: s.content }).toEqual(expected);
  expect(s.usage.completion_tokens).toBe(outputChars);
  expect(s.finishReason).toBe(body.choices[0]!.finish_reason);
  for (const d of s.deltas) expect(`${d.reasoning_content ?? ''}${d.content ?? ''}`).not.toMatch(/<\/?think>|<\|/);
}

describe('reasoning_content for thinking templates', () => {
  it('reads the syntax from the template text', async () => {
    const { readFileSync } = await import('node:fs');
    const syntax = (family: Family) => reasoningSyntax(readFileSync(templatePath(family), 'utf8'))?.kind;
    expect(syntax('qwen3')).toBe('think');
    expect(syntax('smollm3')).toBe('think');
    expect(syntax('deepseek-r1-distill-qwen')).toBe('think');
    expect(syntax('gpt-oss')).toBe('harmony');
    expect(reasoningSyntax('{% for m in messages %}{{ m.content }}{% endfor %}')).toBeUndefined();
  });

  it('Qwen 3: the think block is reasoning, the rest content, whole and streamed', async () => {
    const output = ['<think>', '\n', 'The user asks', ' for a capital.', '\n', '</think>', '\n\n', 'Paris', '.'];
    const url = await serve('qwen3', chunks(...output));
    await expectSplit(url, { reasoning: 'The user asks for a capital.', content: 'Paris.' }, output.join('').length);
  });

  it('Qwen 3: </think> split across tokens is still found, and never shown half', async () => {
    const output = ['<th', 'ink>\nHmm, ', 'France', '.\n</', 'thi', 'nk>\n', '\nThe capital', ' is Paris.'];
    const url = await serve('qwen3', chunks(...output));
    await expectSplit(url, { reasoning: 'Hmm, France.', content: 'The capital is Paris.' }, output.join('').length);
  });

  it('Qwen 3 with enable_thinking: false: the template closes the block, and all the output is content', async () => {
    const calls: CompleteCall[] = [];
    const output = ['<think>\nx\n</think>', '\n\nParis.'];
    const url = await serve('qwen3', chunks(...output), calls);
    const body = await whole(url, { enable_thinking: false });
    expect(promptText(calls[0]!).endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
    expect(body.choices[0]!.message).toEqual({ role: 'assistant', content: output.join('') });
    const s = await streamed(url, { chat_template_kwargs: { enable_thinking: false } });
    expect(s.content).toBe(output.join(''));
    expect(s.hasReasoningField).toBe(false);
  });

  it('an answer with no think block is all content; a thinking template still says reasoning_content: null', async () => {
    const url = await serve('qwen3', chunks('Paris', ' is the capital.'));
    await expectSplit(url, { reasoning: null, content: 'Paris is the capital.' }, 'Paris is the capital.'.length);
  });

  it('cut short while thinking (max_tokens): everything so far is reasoning, the content empty', async () => {
    const output = ['<think>\n', 'Let me think', ' about France'];
    const url = await serve('qwen3', chunks(...output));
    await expectSplit(url, { reasoning: 'Let me think about France', content: '' }, output.join('').length);
    expect((await whole(url)).choices[0]!.finish_reason).toBe('length');
  });

  it('DeepSeek R1 distill: the prompt opens <think>, so the output starts inside the block', async () => {
    const calls: CompleteCall[] = [];
    const output = ['Okay, the user', ' wants a capital.\n', '</think>\n\n', 'Paris.'];
    const url = await serve('deepseek-r1-distill-qwen', chunks(...output), calls);
    await expectSplit(url, { reasoning: 'Okay, the user wants a capital.', content: 'Paris.' }, output.join('').length);
    expect(promptText(calls[0]!).endsWith('<think>\n')).toBe(true);
  });

  it('SmolLM3 (thinking by default): the block it writes is reasoning', async () => {
    const output = ['<think>\n', 'France → Paris', '\n</think>\n', 'Paris.'];
    const url = await serve('smollm3', chunks(...output));
    await expectSplit(url, { reasoning: 'France → Paris', content: 'Paris.' }, output.join('').length);
  });

  it('gpt-oss: the analysis channel is reasoning, the final channel content; reasoning_effort reaches the template', async () => {
    const calls: CompleteCall[] = [];
    const output = [
      '<|channel|>',
      'analysis',
      '<|message|>',
      'User asks capital.',
      ' Answer: Paris.',
      '<|end|>',
      '<|start|>',
      'assistant',
      '<|channel|>',
      'final',
      '<|message|>',
      'Paris',
      '.',
    ];
    const url = await serve('gpt-oss', chunks(...output), calls);
    // The engine's text has no markers: the usage counts its tokens as it always does.
    const engineChars = output.filter((p) => SPECIAL[p] === undefined).join('').length;
    await expectSplit(url, { reasoning: 'User asks capital. Answer: Paris.', content: 'Paris.' }, engineChars, {
      reasoning_effort: 'high',
    });
    expect(promptText(calls[0]!)).toContain('Reasoning: high');
    expect(promptText(calls[0]!).endsWith('<|start|>assistant')).toBe(true);
    await whole(url);
    expect(promptText(calls.at(-1)!)).toContain('Reasoning: medium');
  });

  it('a template that does not think: no reasoning_content, the output untouched', async () => {
    const engine = fakeEngine(() => chunks('<think>', 'a</think>b'));
    const url = await listenOnLoopback(createApp({ engine, modelId: 'plain' }));
    expect((await whole(url)).choices[0]!.message).toEqual({ role: 'assistant', content: '<think>a</think>b' });
  });
});

describe('splitters', () => {
  /** Every way of cutting `text` in two pushes splits as the whole text does. */
  function expectCutsAgree(make: () => ReasoningSplitter, text: string) {
    const all = make();
    const one = all.push(text);
    const end = all.finish();
    const expected = { reasoning: one.reasoning + end.reasoning, content: one.content + end.content };
    for (let i = 0; i <= text.length; i++) {
      for (const j of [i, Math.min(text.length, i + 3)]) {
        const s = make();
        const parts = [s.push(text.slice(0, i)), s.push(text.slice(i, j)), s.push(text.slice(j)), s.finish()];
        expect({ reasoning: parts.map((p) => p.reasoning).join(''), content: parts.map((p) => p.content).join('') }).toEqual(expected);
      }
    }
    return expected;
  }

  it('a think block splits the same however the text is cut', () => {
    const think = () => new ThinkSplitter('<think>', '</think>', false);
    expect(expectCutsAgree(think, '\n<think>\n a < b </th \n</think>\n\nx </think> y')).toEqual({
      reasoning: 'a < b </th',
      content: 'x </think> y',
    });
    expect(expectCutsAgree(think, '<thinking> is a tag')).toEqual({ reasoning: '', content: '<thinking> is a tag' });
    expect(expectCutsAgree(think, '  <thi')).toEqual({ reasoning: '', content: '  <thi' });
    expect(expectCutsAgree(() => new ThinkSplitter('<think>', '</think>', true), 'r\n</think>c')).toEqual({ reasoning: 'r', content: 'c' });
  });

  it('harmony channels split the same however the text is cut', () => {
    const text = '<|channel|>analysis<|message|>think <|x<|end|><|start|>assistant<|channel|>final<|message|>answer<|return|>';
    expect(expectCutsAgree(() => new HarmonySplitter(), text)).toEqual({ reasoning: 'think <|x', content: 'answer' });
    expect(expectCutsAgree(() => new HarmonySplitter(), 'plain answer')).toEqual({ reasoning: '', content: 'plain answer' });
  });
});
