import { normalizeMessages, type ChatMessage, type ChatTool, type JsonObject, type JsonValue } from './chat-message.js';
import { ChatTemplateError } from './chat-template-error.js';
import {
  chatTemplatesFromGguf,
  chatTemplatesFromGgufEntries,
  chatTemplatesFromTokenizerConfig,
  DEFAULT_VARIANT,
  readChatTemplateFile,
  TOOL_USE_VARIANT,
  type ChatTemplateSource,
  type ChatTemplateVariant,
  type GgufMetadataSource,
  type GgufTemplateEntry,
} from './chat-template-source.js';
import { defaultRenderSandbox, type RenderLimits, type RenderSandbox } from './render-sandbox.js';

/** Longest template source accepted (the largest real templates are ~20 KiB). */
export const MAX_TEMPLATE_CHARS = 1024 * 1024;

export interface ChatTemplateOptions {
  /** Names the template in errors (`fromString` only; default `inline template`). */
  source?: string;
  /** Printed by `{{ bos_token }}`; overrides what the model file says. */
  bosToken?: string;
  /** Printed by `{{ eos_token }}`; overrides what the model file says. */
  eosToken?: string;
  /** Bounds on each render (defaults: the sandbox's). */
  limits?: RenderLimits;
  /** The sandbox to render in (default: the process-wide one). */
  sandbox?: RenderSandbox;
}

export interface ChatTemplateRenderInput {
  messages: readonly ChatMessage[];
  /** OpenAI-style tool definitions; passed to the template as `tools`. */
  tools?: readonly ChatTool[];
  /** RAG documents, passed as `documents` (Command R, Granite). */
  documents?: readonly JsonObject[];
  /** End with the header of an assistant turn. Default false, as in transformers. */
  addGenerationPrompt?: boolean;
  /**
   * More template variables: `enable_thinking`, `reasoning_effort`, `date_string`, ...
   * From an HTTP request, pass only an allowlist of these, never arbitrary keys.
   */
  extra?: Readonly<Record<string, JsonValue>>;
  /** Use this named variant rather than the automatic choice (`tool_use` with tools, else `default`). */
  variant?: string;
  /** The time `strftime_now()` sees; default now. */
  now?: Date;
}

/** Variables the caller cannot replace through `extra`: they are the render's own inputs. */
const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'messages',
  'tools',
  'documents',
  'add_generation_prompt',
  'bos_token',
  'eos_token',
  'raise_exception',
  'strftime_now',
  'range',
  'namespace',
  'true',
  'false',
  'none',
  'True',
  'False',
  'None',
]);

/**
 * A model's chat template (with its named variants), rendered the way transformers'
 * `apply_chat_template` does: Jinja with `trim_blocks` and `lstrip_blocks`, the variables
 * `messages`, `tools`, `documents`, `add_generation_prompt`, `bos_token`, `eos_token`, and the
 * functions `raise_exception` and `strftime_now`.
 *
 * Templates are model data, so they are treated as untrusted: they are parsed and rendered in
 * a `RenderSandbox` (a worker process with time, size and memory limits), never on the calling
 * thread. Creating a ChatTemplate does not even parse it (jinja's lexer is quadratic on long
 * runs of whitespace, so parsing is a hazard too); `validate()` does, at load time.
 *
 * ```ts
 * const template = ChatTemplate.fromGgufMetadata(await GgufFile.open('model.gguf'));
 * const prompt = await template.render({ messages: [{ role: 'user', content: 'Hi' }], addGenerationPrompt: true });
 * ```
 */
export class ChatTemplate {
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly #variants: ReadonlyMap<string, ChatTemplateVariant>;
  readonly #limits: RenderLimits | undefined;
  readonly #sandbox: RenderSandbox | undefined;

  private constructor(source: ChatTemplateSource, options: ChatTemplateOptions) {
    if (source.variants.size === 0) throw new ChatTemplateError('invalid_template', options.source ?? 'model files', 'no chat template');
    for (const variant of source.variants.values()) {
      if (variant.template.length > MAX_TEMPLATE_CHARS) {
        const detail = `the template has ${variant.template.length} characters (limit ${MAX_TEMPLATE_CHARS})`;
        throw new ChatTemplateError('invalid_template', variant.source, detail);
      }
    }
    this.#variants = new Map(source.variants);
    this.bosToken = options.bosToken ?? source.bosToken;
    this.eosToken = options.eosToken ?? source.eosToken;
    this.#limits = options.limits;
    this.#sandbox = options.sandbox;
  }

  /** One template text, e.g. from `--chat-template` given inline. */
  static fromString(template: string, options: ChatTemplateOptions = {}): ChatTemplate {
    const source = options.source ?? 'inline template';
    return new ChatTemplate({ variants: new Map([[DEFAULT_VARIANT, { template, source }]]) }, options);
  }

  /** Templates already read from a model file (see `chat-template-source.ts`). */
  static fromSource(source: ChatTemplateSource, options: ChatTemplateOptions = {}): ChatTemplate {
    return new ChatTemplate(source, options);
  }

  /** From a parsed `tokenizer_config.json`; `origin` names the file in errors. */
  static fromTokenizerConfig(config: unknown, origin = 'tokenizer_config.json', options: ChatTemplateOptions = {}): ChatTemplate {
    return new ChatTemplate(chatTemplatesFromTokenizerConfig(config, origin), options);
  }

  /** From a GGUF's metadata (an open `GgufFile` from `@mistralrs/quant`, or its entries). */
  static fromGgufMetadata(file: GgufMetadataSource, options: ChatTemplateOptions = {}): ChatTemplate {
    return new ChatTemplate(chatTemplatesFromGguf(file), options);
  }

  /** From a GGUF's template entries and BOS/EOS text, as a loaded model reads them from its file. */
  static fromGgufTemplates(
    origin: string,
    entries: readonly GgufTemplateEntry[],
    bosToken: string | undefined,
    eosToken: string | undefined,
    options: ChatTemplateOptions = {},
  ): ChatTemplate {
    return new ChatTemplate(chatTemplatesFromGgufEntries(origin, entries, bosToken, eosToken), options);
  }

  /** From a `.jinja` file (the template text) or a `.json` tokenizer config. */
  static async fromFile(path: string, options: ChatTemplateOptions = {}): Promise<ChatTemplate> {
    return new ChatTemplate(await readChatTemplateFile(path), options);
  }

  /**
   * The value of a `--chat-template` option: a template written inline (it contains `{{` or
   * `{%`), otherwise the path of a template file.
   */
  static async fromOverride(value: string, options: ChatTemplateOptions = {}): Promise<ChatTemplate> {
    return /\{[{%]/.test(value)
      ? ChatTemplate.fromString(value, { source: 'inline template (--chat-template)', ...options })
      : ChatTemplate.fromFile(value, options);
  }

  /** The names of the variants (`default`, `tool_use`, ...). */
  get variantNames(): string[] {
    return [...this.#variants.keys()];
  }

  /** A variant's template text. */
  text(variant = DEFAULT_VARIANT): string | undefined {
    return this.#variants.get(variant)?.template;
  }

  /** The variant a render uses: the one asked for; else `tool_use` if tools are given and it exists; else `default`. */
  selectVariant(input: Pick<ChatTemplateRenderInput, 'tools' | 'variant'> = {}): string {
    if (input.variant !== undefined) return input.variant;
    if (input.tools && input.tools.length > 0 && this.#variants.has(TOOL_USE_VARIANT)) return TOOL_USE_VARIANT;
    return DEFAULT_VARIANT;
  }

  /** Renders the prompt; rejects with a `ChatTemplateError` naming the template's source. */
  async render(input: ChatTemplateRenderInput): Promise<string> {
    const variant = this.#variant(this.selectVariant(input), input.variant !== undefined);
    if (!Array.isArray(input.messages)) throw new ChatTemplateError('invalid_input', variant.source, 'messages must be an array');
    const context: Record<string, unknown> = {
      messages: normalizeMessages(input.messages),
      // transformers passes None when there are none, and templates test `tools is not none`.
      tools: input.tools ?? null,
      documents: input.documents ?? null,
      add_generation_prompt: input.addGenerationPrompt ?? false,
      bos_token: this.bosToken,
      eos_token: this.eosToken,
    };
    for (const [name, value] of Object.entries(input.extra ?? {})) {
      if (RESERVED_NAMES.has(name)) {
        const detail = `${JSON.stringify(name)} cannot be passed as an extra template variable`;
        throw new ChatTemplateError('invalid_input', variant.source, detail);
      }
      context[name] = value;
    }
    return this.#sandboxToUse().render({
      source: variant.source,
      template: variant.template,
      context,
      nowMs: (input.now ?? new Date()).getTime(),
      ...(this.#limits ? { limits: this.#limits } : {}),
    });
  }

  /**
   * Checks every variant at load time, so a broken or hostile template fails when the model
   * loads rather than at its first request: each must parse, and render a one-message
   * conversation within the limits. `raise_exception` from that probe is fine (a template may
   * insist on a system message, say). A model without a default template fails too.
   */
  async validate(): Promise<void> {
    this.#variant(DEFAULT_VARIANT, false);
    const sandbox = this.#sandboxToUse();
    for (const [name, variant] of this.#variants) {
      await sandbox.check({ source: variant.source, template: variant.template, ...(this.#limits ? { limits: this.#limits } : {}) });
      try {
        await this.render({ messages: [{ role: 'user', content: 'Hello' }], addGenerationPrompt: true, variant: name });
      } catch (error) {
        if (!(error instanceof ChatTemplateError && error.kind === 'raise_exception')) throw error;
      }
    }
  }

  /** The variant called `name`; missing, it is the request's fault if it asked for it, else the model's. */
  #variant(name: string, requested: boolean): ChatTemplateVariant {
    const variant = this.#variants.get(name);
    if (variant) return variant;
    const first = this.#variants.values().next().value as ChatTemplateVariant;
    const detail = `no chat template named ${JSON.stringify(name)} (have: ${this.variantNames.join(', ')})`;
    throw new ChatTemplateError(requested ? 'invalid_input' : 'invalid_template', first.source, detail);
  }

  #sandboxToUse(): RenderSandbox {
    return this.#sandbox ?? defaultRenderSandbox();
  }
}
