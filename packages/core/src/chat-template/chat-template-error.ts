/**
 * What went wrong with a chat template, for callers to branch on. The server maps
 * `raise_exception` and `invalid_input` to HTTP 400 (the request is at fault: the template
 * rejected the conversation, or the messages cannot be rendered), the failures of a render
 * (`render_error`, `timeout`, `too_large`, `out_of_memory`) to 422 (this template cannot
 * render this request: deterministic, so not worth a retry), and `invalid_template` to 500
 * (the model's template itself is broken).
 */
export type ChatTemplateErrorKind =
  /** The template is missing, too large, or does not parse. */
  | 'invalid_template'
  /** The template called `raise_exception(msg)`; `detail` is its message. */
  | 'raise_exception'
  /** The render input is unusable: unknown variant, reserved kwarg, values that cannot be copied. */
  | 'invalid_input'
  /** The template failed while rendering (a type error, a call of a non-function, deep recursion). */
  | 'render_error'
  /** Rendering ran past the sandbox's time limit. */
  | 'timeout'
  /** The output, a string or list built while rendering, or a `range()` passed its size limit. */
  | 'too_large'
  /** The render worker ran out of its heap. */
  | 'out_of_memory';

/** The kinds that are the request's fault rather than the model's or the server's. */
const CLIENT_KINDS: ReadonlySet<ChatTemplateErrorKind> = new Set(['raise_exception', 'invalid_input']);

/**
 * Any failure to load or render a chat template. The message names where the template came
 * from (`chat template from model.gguf (tokenizer.chat_template): ...`), since a template is
 * model data and a user needs to know which file to fix or override.
 */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
  readonly code = 'ChatTemplateError' as const;

  /**
   * @param kind what went wrong
   * @param source where the template came from, e.g. `model.gguf (tokenizer.chat_template)`
   * @param detail the bare reason; for `raise_exception`, the template's own message
   */
  constructor(
    readonly kind: ChatTemplateErrorKind,
    readonly source: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`chat template from ${source}: ${kind === 'raise_exception' ? `raise_exception: ${detail}` : detail}`, options);
  }

  /** True when the request is at fault (answer 400), false when the template or a limit is. */
  get isClientError(): boolean {
    return CLIENT_KINDS.has(this.kind);
  }
}
