// Reading templates from their sources (GGUF metadata, tokenizer_config.json, files, inline),
// strftime, and message normalization.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  ChatTemplate,
  ChatTemplateError,
  chatTemplatesFromGguf,
  chatTemplatesFromTokenizerConfig,
  defaultRenderSandbox,
  normalizeMessages,
  specialTokenText,
  strftime,
  type ChatMessage,
} from '../../src/chat-template/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'chat-template-test-'));
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await defaultRenderSandbox().close();
});

const SIMPLE = '{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{{ eos_token }}';
const hello: ChatMessage[] = [{ role: 'user', content: 'hi' }];

describe('GGUF metadata', () => {
  const gguf = {
    path: '/models/tiny.gguf',
    metadata: [
      { key: 'general.architecture', value: 'llama' },
      { key: 'tokenizer.ggml.tokens', value: { itemType: 'string', items: ['<unk>', '<s>', '</s>'] } },
      { key: 'tokenizer.ggml.bos_token_id', value: 1 },
      { key: 'tokenizer.ggml.eos_token_id', value: 2n }, // 64-bit ids come as bigints
      { key: 'tokenizer.chat_template', value: SIMPLE },
      { key: 'tokenizer.chat_templates', value: { itemType: 'string', items: ['tool_use'] } },
      { key: 'tokenizer.chat_template.tool_use', value: 'tools:{{ tools | length }}' },
    ],
  };

  it('reads the default template, named variants and the BOS/EOS text', () => {
    const source = chatTemplatesFromGguf(gguf);
    expect([...source.variants.keys()]).toEqual(['default', 'tool_use']);
    expect(source.variants.get('tool_use')?.source).toBe('tiny.gguf (tokenizer.chat_template.tool_use)');
    expect(source.bosToken).toBe('<s>');
    expect(source.eosToken).toBe('</s>');
  });

  it('renders, picking tool_use when tools are given', async () => {
    const template = ChatTemplate.fromGgufMetadata(gguf);
    expect(await template.render({ messages: hello })).toBe('<s><user>hi</s>');
    expect(await template.render({ messages: hello, tools: [{ type: 'function', function: { name: 'f' } }] })).toBe('tools:1');
  });

  it('a GGUF without a template is an error that suggests --chat-template', () => {
    expect(() => chatTemplatesFromGguf({ path: 'x.gguf', metadata: [] })).toThrow(
      /x\.gguf: the GGUF has no tokenizer\.chat_template; give one with --chat-template/,
    );
  });

  it('token ids out of range or missing leave the tokens undefined', () => {
    const source = chatTemplatesFromGguf({
      metadata: [
        { key: 'tokenizer.chat_template', value: 'x' },
        { key: 'tokenizer.ggml.tokens', value: ['a'] },
        { key: 'tokenizer.ggml.bos_token_id', value: 7 },
      ],
    });
    expect(source.bosToken).toBeUndefined();
    expect(source.eosToken).toBeUndefined();
    expect(source.variants.get('default')?.source).toBe('GGUF metadata (tokenizer.chat_template)');
  });
});

describe('tokenizer_config.json', () => {
  it('chat_template as a string; bos/eos as strings or {content} objects', async () => {
    const template = ChatTemplate.fromTokenizerConfig({
      chat_template: SIMPLE,
      bos_token: { __type: 'AddedToken', content: '<s>', lstrip: false },
      eos_token: '</s>',
    });
    expect(template.bosToken).toBe('<s>');
    expect(template.eosToken).toBe('</s>');
    expect(await template.render({ messages: hello })).toBe('<s><user>hi</s>');
  });

  it('chat_template as a list of {name, template}', () => {
    const source = chatTemplatesFromTokenizerConfig(
      {
        chat_template: [
          { name: 'default', template: 'a' },
          { name: 'tool_use', template: 'b' },
        ],
      },
      'cfg.json',
    );
    expect([...source.variants.entries()]).toEqual([
      ['default', { template: 'a', source: 'cfg.json (chat_template "default")' }],
      ['tool_use', { template: 'b', source: 'cfg.json (chat_template "tool_use")' }],
    ]);
  });

  it('explicit options override the tokens of the file', () => {
    const template = ChatTemplate.fromTokenizerConfig({ chat_template: 'x', bos_token: '<s>' }, 'cfg.json', { bosToken: '<bos>' });
    expect(template.bosToken).toBe('<bos>');
  });

  it('refuses configs without a usable chat_template', () => {
    expect(() => chatTemplatesFromTokenizerConfig({ bos_token: '<s>' })).toThrow(/tokenizer_config\.json: no chat_template field/);
    expect(() => chatTemplatesFromTokenizerConfig([1, 2])).toThrow(ChatTemplateError);
    expect(() => chatTemplatesFromTokenizerConfig({ chat_template: [{ name: 'x' }] })).toThrow(/\{name, template\}/);
  });

  it('specialTokenText', () => {
    expect(specialTokenText('<s>')).toBe('<s>');
    expect(specialTokenText({ content: '<s>' })).toBe('<s>');
    expect(specialTokenText(null)).toBeUndefined();
    expect(specialTokenText({ text: '<s>' })).toBeUndefined();
  });
});

describe('files and overrides (--chat-template)', () => {
  it('a .jinja file is the template text', async () => {
    const path = join(dir, 'chatml.jinja');
    writeFileSync(path, SIMPLE);
    const template = await ChatTemplate.fromFile(path, { bosToken: '[', eosToken: ']' });
    expect(await template.render({ messages: hello })).toBe('[<user>hi]');
  });

  it('a .json file is a tokenizer config', async () => {
    const path = join(dir, 'tokenizer_config.json');
    writeFileSync(path, JSON.stringify({ chat_template: SIMPLE, bos_token: '<s>', eos_token: '</s>' }));
    expect(await (await ChatTemplate.fromFile(path)).render({ messages: hello })).toBe('<s><user>hi</s>');
  });

  it('errors name the file', async () => {
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ not json');
    await expect(ChatTemplate.fromFile(broken)).rejects.toThrow(/^chat template from broken\.json: invalid JSON/);
    await expect(ChatTemplate.fromFile(join(dir, 'missing.jinja'))).rejects.toMatchObject({ kind: 'invalid_template' });
    const syntax = join(dir, 'syntax.jinja');
    writeFileSync(syntax, '{% if %}');
    const fromFile = await ChatTemplate.fromFile(syntax);
    await expect(fromFile.render({ messages: hello })).rejects.toThrow(/^chat template from syntax\.jinja: syntax error/);
  });

  it('an override is inline when it looks like a template, a path otherwise', async () => {
    const inline = await ChatTemplate.fromOverride('{{ messages[0].content }}!');
    expect(await inline.render({ messages: hello })).toBe('hi!');
    const path = join(dir, 'override.jinja');
    writeFileSync(path, 'file:{{ messages | length }}');
    expect(await (await ChatTemplate.fromOverride(path)).render({ messages: hello })).toBe('file:1');
    const raising = await ChatTemplate.fromOverride('{{ raise_exception("no") }}');
    const error = await raising.render({ messages: hello }).catch((e: unknown) => e);
    expect((error as ChatTemplateError).message).toBe('chat template from inline template (--chat-template): raise_exception: no');
  });
});

describe('strftime', () => {
  it('formats the common codes in local time with English names', () => {
    const date = new Date(2024, 0, 5, 9, 7, 3); // Friday
    expect(strftime(date, '%Y %y %m %d [%e] %j %H %I %M %S %p')).toBe('2024 24 01 05 [ 5] 005 09 09 07 03 AM');
    expect(strftime(date, '%a %A %b %B')).toBe('Fri Friday Jan January');
    expect(strftime(date, '100%% %Q %')).toBe('100% %Q %');
  });

  it('afternoon, midnight and the last day of a leap year', () => {
    expect(strftime(new Date(2024, 6, 26, 15, 30, 0), '%I:%M %p, %d %B %Y')).toBe('03:30 PM, 26 July 2024');
    expect(strftime(new Date(2024, 11, 31, 0, 0, 0), '%I %p %j %a')).toBe('12 AM 366 Tue');
    expect(strftime(new Date(2023, 11, 31, 12, 0, 0), '%I %p %j')).toBe('12 PM 365');
  });

  it('strftime_now in a template uses the render time', async () => {
    const template = ChatTemplate.fromString('{{ strftime_now("%A %e %B %Y, %H:%M") }}');
    expect(await template.render({ messages: [], now: new Date(2025, 1, 3, 8, 0, 0) })).toBe('Monday  3 February 2025, 08:00');
  });
});

describe('normalizeMessages', () => {
  it('parses JSON-string tool arguments into objects without touching the input', () => {
    const messages: ChatMessage[] = [
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '{"x": [1, 2]}' } }],
      },
    ];
    const copy = structuredClone(messages);
    const normalized = normalizeMessages(messages);
    expect(normalized[0]?.tool_calls?.[0]?.function.arguments).toEqual({ x: [1, 2] });
    expect(normalized[0]?.tool_calls?.[0]?.id).toBe('a');
    expect(messages).toEqual(copy);
  });

  it('keeps arguments that are not a JSON object as the string given', () => {
    for (const args of ['not json', '[1, 2]', '"s"', '']) {
      const [message] = normalizeMessages([{ role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: args } }] }]);
      expect(message?.tool_calls?.[0]?.function.arguments).toBe(args);
    }
  });

  it('passes other messages and fields through unchanged', () => {
    const messages: ChatMessage[] = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'hi' },
          { type: 'image_url', image_url: { url: 'data:,' } },
        ],
      },
      { role: 'tool', tool_call_id: 'a', name: 'f', content: '42' },
    ];
    expect(normalizeMessages(messages)).toEqual(messages);
  });
});
