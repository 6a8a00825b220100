/**
 * The model's thinking, apart from its answer: `reasoning_content` beside `content`, in the
 * message and in stream deltas, as mistral.rs, vLLM and DeepSeek's API send it.
 *
 * Which models think is read from the chat template's text, never from a list of names:
 *
 * - `<think>` … `</think>` (Qwen 3, QwQ, DeepSeek R1 and its distills, SmolLM3): a think block
 *   at the start of the output is reasoning, the rest is content. A template whose generation
 *   prompt already opens the block (the R1 distills end it with `<think>\n`) starts inside it.
 * - gpt-oss's harmony channels: `<|channel|>analysis<|message|>…<|end|>` is reasoning, the
 *   `final` (and `commentary`) channels are content. Their markers are special tokens, which the
 *   engine's text leaves out, so the route feeds this splitter the generated tokens decoded
 *   with special tokens kept.
 *
 * A splitter is fed text as it comes (`push`) and `finish`ed at the end; the whole output fed
 * at once splits exactly as the stream does, so streamed deltas concatenate to the
 * non-streamed message. Tags split across tokens (`</th` + `ink>`) are held until they are
 * whole. Token counts and stop handling are the engine's, untouched.
 */
import type { JsonValue } from '@mistralrs/core';

import type { ServingEngine } from './serving-engine.js';

/** A part of the output: its reasoning and its content. */
export interface ReasoningSplit {
  reasoning: string;
  content: string;
}

export interface ReasoningSplitter {
  push(text: string): ReasoningSplit;
  /** What is still held back; call once, at the end. */
  finish(): ReasoningSplit;
}

export type ReasoningSyntax = { kind: 'think'; open: string; close: string } | { kind: 'harmony' };

export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';

/** How the template's model writes its reasoning, read from the template's text; undefined
 * when it does not think (then nothing is split). */
export function reasoningSyntax(templateText: string | undefined): ReasoningSyntax | undefined {
  if (templateText === undefined) return undefined;
  if (templateText.includes('<|channel|>') && templateText.includes('<|message|>')) return { kind: 'harmony' };
  if (templateText.includes(THINK_CLOSE)) return { kind: 'think', open: THINK_OPEN, close: THINK_CLOSE };
  return undefined;
}

/** Whether the request turned thinking off (`enable_thinking: false`, `thinking: false`): then
 * the model's output is all content, whatever it writes. */
export function thinkingTurnedOff(templateArgs: Readonly<Record<string, JsonValue>>): boolean {
  return templateArgs.enable_thinking === false || templateArgs.thinking === false;
}

/** A new splitter for one choice; `prompt` is the rendered prompt (does it open the block?). */
export function newSplitter(syntax: ReasoningSyntax, prompt: string): ReasoningSplitter {
  if (syntax.kind === 'harmony') return new HarmonySplitter();
  return new ThinkSplitter(syntax.open, syntax.close, new RegExp(`${escapeRegExp(syntax.open)}\\s*$`).test(prompt));
}

/** Whether the template reads the variable `name` (its name appears in the template's text). */
export function templateReads(templateText: string | undefined, name: string): boolean {
  return templateText !== undefined && new RegExp(`\\b${name}\\b`).test(templateText);
}

/**
 * The template variables of a request's thinking switch, for the routes whose API has one of
 * its own (Anthropic's `thinking`, the Responses API's `reasoning.effort`), set as the chat
 * route's `enable_thinking` and `reasoning_effort` set them:
 *
 * - off: `enable_thinking: false` (Qwen 3, SmolLM3 think no more; for any template the output
 *   is then all content, as the chat route's `enable_thinking: false` makes it), and
 *   `reasoning_effort: "none"` where the template reads it;
 * - on: `enable_thinking: true` where the template reads it, and the effort as
 *   `reasoning_effort` where the template reads that (gpt-oss). A template that always
 *   thinks (the R1 distills) needs neither.
 *
 * Undefined when the template does not think and thinking was asked for: the route refuses it.
 */
export function thinkingTemplateArgs(
  templateText: string | undefined,
  thinking: { enabled: boolean; effort?: string },
): Record<string, JsonValue> | undefined {
  const reads = (name: string) => templateReads(templateText, name);
  if (!thinking.enabled) return { enable_thinking: false, ...(reads('reasoning_effort') ? { reasoning_effort: 'none' } : {}) };
  if (reasoningSyntax(templateText) === undefined) return undefined;
  return {
    ...(reads('enable_thinking') ? { enable_thinking: true } : {}),
    ...(thinking.effort !== undefined && reads('reasoning_effort') ? { reasoning_effort: thinking.effort } : {}),
  };
}

/** The engine's tokenizer, as far as a choice's own decoder (special tokens kept) needs it. */
export type DecoderSource = Pick<ServingEngine['tokenizer'], 'createDecoder'>;

/**
 * One output's splitter, fed what the engine generates (its text and its tokens). gpt-oss's
 * harmony markers are special tokens the engine's text leaves out, so for them the output's
 * tokens are decoded again with the special tokens kept; `<think>` tags are plain text and
 * are split from the text itself.
 */
export class OutputReasoning {
  readonly #splitter: ReasoningSplitter;
  readonly #decoder: ReturnType<DecoderSource['createDecoder']> | undefined;

  constructor(tokenizer: DecoderSource, syntax: ReasoningSyntax, prompt: string) {
    this.#splitter = newSplitter(syntax, prompt);
    this.#decoder = syntax.kind === 'harmony' ? tokenizer.createDecoder({ skipSpecialTokens: false }) : undefined;
  }

  push(text: string, tokenIds: readonly number[]): ReasoningSplit {
    const decoder = this.#decoder;
    return this.#splitter.push(decoder ? tokenIds.map((id) => decoder.push(id)).join('') : text);
  }

  /** What is still held back; call once, at the end. */
  finish(): ReasoningSplit {
    const tail = this.#decoder ? this.#splitter.push(this.#decoder.flush()) : none();
    const rest = this.#splitter.finish();
    return { reasoning: tail.reasoning + rest.reasoning, content: tail.content + rest.content };
  }

  /** A whole output split at once (exactly as its stream splits). */
  static whole(
    tokenizer: DecoderSource,
    syntax: ReasoningSyntax,
    prompt: string,
    text: string,
    tokenIds: readonly number[],
  ): ReasoningSplit {
    const output = new OutputReasoning(tokenizer, syntax, prompt);
    const first = output.push(text, tokenIds);
    const rest = output.finish();
    return { reasoning: first.reasoning + rest.reasoning, content: first.content + rest.content };
  }
}

const none = (): ReasoningSplit => ({ reasoning: '', content: '' });

/** The length of the longest end of `text` that begins `tag` (a tag that may still come whole). */
function partialTagAtEnd(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (text.endsWith(tag.slice(0, n))) return n;
  return 0;
}

/**
 * `<think>` … `</think>`: the block must open the output (after white space), or be opened by
 * the prompt. The reasoning is trimmed of the blank lines around it, the content of those that
 * lead it (Qwen 3 writes `</think>\n\n`); an output with no block is all content, as it is.
 */
export class ThinkSplitter implements ReasoningSplitter {
  #mode: 'start' | 'reasoning' | 'content';
  #held = '';
  /** Reasoning text not yet shown (its start trims leading white space). */
  #reasoningStarted = false;
  /** After `</think>`: white space before the content is dropped. */
  #trimContentStart = false;

  constructor(
    readonly open: string,
    readonly close: string,
    startInside: boolean,
  ) {
    this.#mode = startInside ? 'reasoning' : 'start';
  }

  push(text: string): ReasoningSplit {
    this.#held += text;
    const out = none();
    for (;;) {
      if (this.#mode === 'start') {
        const lead = this.#held.trimStart();
        if (lead.length < this.open.length && this.open.startsWith(lead)) return out; // may still open
        if (lead.startsWith(this.open)) {
          this.#held = lead.slice(this.open.length);
          this.#mode = 'reasoning';
        } else this.#mode = 'content';
        continue;
      }
      if (this.#mode === 'reasoning') {
        if (!this.#reasoningStarted) {
          this.#held = this.#held.trimStart();
          if (this.#held === '') return out;
          this.#reasoningStarted = true;
        }
        const end = this.#held.indexOf(this.close);
        if (end >= 0) {
          out.reasoning += this.#held.slice(0, end).trimEnd();
          this.#held = this.#held.slice(end + this.close.length);
          this.#mode = 'content';
          this.#trimContentStart = true;
          continue;
        }
        // Held: a tail that may grow into the close tag, and the white space before it.
        const tag = partialTagAtEnd(this.#held, this.close);
        const shown = this.#held.slice(0, this.#held.length - tag).trimEnd().length;
        out.reasoning += this.#held.slice(0, shown);
        this.#held = this.#held.slice(shown);
        return out;
      }
      if (this.#trimContentStart) {
        this.#held = this.#held.trimStart();
        if (this.#held === '') return out;
        this.#trimContentStart = false;
      }
      out.content += this.#held;
      this.#held = '';
      return out;
    }
  }

  finish(): ReasoningSplit {
    const held = this.#held;
    this.#held = '';
    // Cut short inside the block (max_tokens): all of it was reasoning.
    if (this.#mode === 'reasoning') return { reasoning: this.#reasoningStarted ? held.trimEnd() : '', content: '' };
    if (this.#mode === 'content' && this.#trimContentStart) return none();
    return { reasoning: '', content: held };
  }
}

const HARMONY_MESSAGE = '<|message|>';
const HARMONY_ENDS = ['<|end|>', '<|return|>', '<|call|>', '<|start|>'];
const HARMONY_CHANNEL = /<\|channel\|>\s*([A-Za-z_]+)/;

/**
 * gpt-oss's harmony messages, fed with their special-token markers:
 * `<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…<|return|>`.
 * The `analysis` channel is reasoning; `final` and `commentary` are content; headers and
 * markers are neither. An output that does not begin with a marker is all content.
 */
export class HarmonySplitter implements ReasoningSplitter {
  #mode: 'start' | 'header' | 'body' | 'plain' = 'start';
  #channel: 'reasoning' | 'content' = 'content';
  #held = '';

  push(text: string): ReasoningSplit {
    this.#held += text;
    const out = none();
    for (;;) {
      switch (this.#mode) {
        case 'start': {
          const lead = this.#held.trimStart();
          if (lead.length < 2 && '<|'.startsWith(lead)) return out;
          this.#mode = lead.startsWith('<|') ? 'header' : 'plain';
          continue;
        }
        case 'plain':
          out.content += this.#held;
          this.#held = '';
          return out;
        case 'header': {
          const at = this.#held.indexOf(HARMONY_MESSAGE);
          if (at < 0) return out;
          const channel = HARMONY_CHANNEL.exec(this.#held.slice(0, at))?.[1];
          this.#channel = channel === 'analysis' ? 'reasoning' : 'content';
          this.#held = this.#held.slice(at + HARMONY_MESSAGE.length);
          this.#mode = 'body';
          continue;
        }
        case 'body': {
          const ends = HARMONY_ENDS.map((marker) => [this.#held.indexOf(marker), marker.length] as const).filter(([i]) => i >= 0);
          const first = ends.sort((a, b) => a[0] - b[0])[0];
          if (first) {
            out[this.#channel] += this.#held.slice(0, first[0]);
            // `<|start|>` opens the next header; the others end the message before it.
            this.#held = this.#held.slice(first[0] + (this.#held.startsWith('<|start|>', first[0]) ? 0 : first[1]));
            this.#mode = 'header';
            continue;
          }
          const hold = Math.max(0, ...HARMONY_ENDS.map((marker) => partialTagAtEnd(this.#held, marker)));
          out[this.#channel] += this.#held.slice(0, this.#held.length - hold);
          this.#held = this.#held.slice(this.#held.length - hold);
          return out;
        }
      }
    }
  }

  finish(): ReasoningSplit {
    const held = this.#held;
    this.#held = '';
    const out = none();
    if (this.#mode === 'body') out[this.#channel] = held;
    else if (this.#mode === 'plain' || this.#mode === 'start') out.content = held;
    return out;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
