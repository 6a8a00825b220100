/**
 * A chat turn's prompt, prepared one way for every caller (`Engine.chat`, the server's chat
 * route and its /tokenize): the template variant (`tool_use` when tools are shown), the tool
 * plan (tools given to the template or described in a system message; a grammar that forces a
 * call), the extra template variables, the render in the sandbox, and the tokens by the
 * engine's rule. Planning is synchronous, so a caller can refuse a request before rendering.
 */
import {
  isNeutralTemplateArgument,
  templateReadsVariable,
  type ChatMessage,
  type ChatTemplate,
  type ChatTool,
  type JsonValue,
} from '../chat-template/index.js';
import type { Grammar } from '../grammar/index.js';
import { planToolChat, type ToolCallFormat, type ToolChoice } from '../tools/index.js';

export interface ChatPromptRequest {
  messages: readonly ChatMessage[];
  tools?: readonly ChatTool[];
  /** `auto` (default): the model may call; `required` or a named function: a grammar makes it
   * call; `none`: the tools are not shown. */
  toolChoice?: ToolChoice;
  /** Let a forced call (`required`, a named function) be several calls (default false). */
  parallelToolCalls?: boolean;
  /** Extra template variables (`enable_thinking`, `reasoning_effort`, ...). Each must be read
   * by the template unless its value asks nothing (false, null, `none`). */
  templateArgs?: Readonly<Record<string, JsonValue>>;
  /** End with the header of the assistant's turn (default true). */
  addGenerationPrompt?: boolean;
}

/** What to render, and how the output is read back. */
export interface ChatPromptPlan {
  template: ChatTemplate;
  /** The template variant rendered. */
  variant: string;
  messages: ChatMessage[];
  /** Tools for the template, when it renders them. */
  templateTools: ChatTool[] | undefined;
  templateArgs: Readonly<Record<string, JsonValue>>;
  addGenerationPrompt: boolean;
  /** How tool calls are read from the output; undefined when none can come. */
  toolCallFormat: ToolCallFormat | undefined;
  /** Forces a call (`toolChoice` `required` or a named function). */
  toolGrammar: Grammar | undefined;
  /** Template variables given a value that asks for something, which the variant never reads:
   * the caller refuses the request rather than ignore them. */
  unreadTemplateArgs: string[];
}

/** Where the prompt is rendered and tokenized: an `Engine`, or the part of one a server holds. */
export interface ChatPromptTarget {
  readonly chatTemplate: ChatTemplate | undefined;
  encodeChatPromptAsync(prompt: string): Promise<number[]>;
}

/** Names the variables `args` sets that the plan's template variant never reads. */
export function unreadTemplateArguments(template: ChatTemplate, variant: string, args: Readonly<Record<string, JsonValue>>): string[] {
  const text = template.text(variant) ?? '';
  return Object.entries(args)
    .filter(([name, value]) => !isNeutralTemplateArgument(name, value) && !templateReadsVariable(text, name))
    .map(([name]) => name);
}

/** The variant, tool plan and variables (and those of them the template would ignore). */
export function planChatPrompt(template: ChatTemplate, request: ChatPromptRequest): ChatPromptPlan {
  const shownTools = request.toolChoice === 'none' ? undefined : request.tools;
  const variant = template.selectVariant({ tools: shownTools });
  const templateArgs = request.templateArgs ?? {};
  const tools = planToolChat({
    templateSource: template.text(variant),
    messages: request.messages,
    tools: request.tools,
    toolChoice: request.toolChoice,
    parallelToolCalls: request.parallelToolCalls,
  });
  return {
    template,
    variant,
    messages: tools.messages,
    templateTools: tools.templateTools,
    templateArgs,
    addGenerationPrompt: request.addGenerationPrompt ?? true,
    toolCallFormat: tools.format,
    toolGrammar: tools.grammar,
    unreadTemplateArgs: unreadTemplateArguments(template, variant, templateArgs),
  };
}

/**
 * Renders the plan (in the template sandbox) and tokenizes it by the engine's rule;
 * `checkText` may refuse the rendered text first (a prompt that cannot fit the context,
 * found without tokenizing it).
 */
export async function renderChatPrompt(
  target: ChatPromptTarget,
  plan: ChatPromptPlan,
  checkText?: (prompt: string) => void,
): Promise<number[]> {
  const prompt = await plan.template.render({
    messages: plan.messages,
    tools: plan.templateTools,
    addGenerationPrompt: plan.addGenerationPrompt,
    extra: plan.templateArgs,
    variant: plan.variant,
  });
  checkText?.(prompt);
  return target.encodeChatPromptAsync(prompt);
}
