/**
 * Constrained decoding: what a request may ask its output to follow. The grammar is compiled
 * natively (llguidance) against the model's vocabulary when the request arrives, so a
 * malformed or unsatisfiable grammar is refused before it queues; each step then masks the
 * logits to the tokens the grammar allows, and tokens the grammar forces are fed without
 * sampling.
 */
import { callNative, MistralrsError } from '@mistralrs/napi-support';

import { binding, type Binding } from '../native.js';
import type { Tokenizer } from '../tokenizer.js';

/** A JSON Schema given as an object (or as its JSON text). */
export type JsonSchema = Record<string, unknown> | boolean;

export type Grammar =
  /** The output is JSON valid against the schema. */
  | { type: 'json_schema'; value: JsonSchema | string }
  /** The output is a JSON object (any). */
  | { type: 'json_object' }
  /** The whole output matches the regular expression (Rust `regex` syntax). */
  | { type: 'regex'; value: string }
  /** llguidance's Lark dialect: rules, `/regex/` terminals, `%json { … }` embedded schemas. */
  | { type: 'lark'; value: string }
  /** llguidance's own format: a JSON grammar list, or Lark text. */
  | { type: 'llguidance'; value: string | Record<string, unknown> };

export const GRAMMAR_TYPES = ['json_schema', 'json_object', 'regex', 'lark', 'llguidance'] as const;

/**
 * The start of the message of a grammar refused for its size rather than its content (the
 * native compiler's budget: text length, schema objects, properties per object, Lark
 * definitions and terminals, llguidance's lexer fuel and symbols). See docs/server.md.
 */
export const GRAMMAR_TOO_COMPLEX = 'grammar too complex: ';

/**
 * Whether `error` refuses a grammar for exceeding the compile budget (or, during generation,
 * a step's budget) rather than for being malformed.
 */
export function isGrammarTooComplex(error: unknown): boolean {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message.includes(GRAMMAR_TOO_COMPLEX);
}

/** A compiled grammar: each sequence that uses it reads from its own copy. */
export type CompiledGrammar = Binding.ConstraintHandle;

/** Compiles grammars against one tokenizer; its vocabulary trie is built on first use. */
export class GrammarCompiler {
  #native: Promise<Binding.GrammarCompilerHandle> | undefined;

  constructor(private readonly tokenizer: Tokenizer) {}

  /**
   * Rejects with an `InvalidArgumentError` naming what is wrong with the grammar; one over the
   * compile budget has a message starting with `GRAMMAR_TOO_COMPLEX`.
   */
  async compile(grammar: Grammar): Promise<CompiledGrammar> {
    if ('value' in grammar && typeof grammar.value === 'object') checkDepth(grammar.value);
    this.#native ??= callNative(() => binding.createGrammarCompiler(this.tokenizer.handle));
    const compiler = await this.#native;
    return callNative(() => compiler.compile(grammar.type, grammarText(grammar)));
  }
}

/** serde_json's limit, which the native compiler parses the schema with. */
export const MAX_SCHEMA_DEPTH = 128;

/**
 * Refuses a schema object nested deeper than the native side parses, before JSON.stringify
 * would recurse into it (a few thousand levels overflow the JavaScript stack). No recursion.
 */
function checkDepth(value: unknown): void {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (item === null || typeof item !== 'object') continue;
    if (depth > MAX_SCHEMA_DEPTH) {
      throw new MistralrsError('InvalidArgumentError', `${GRAMMAR_TOO_COMPLEX}the schema nests deeper than ${MAX_SCHEMA_DEPTH} levels`);
    }
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
}

function grammarText(grammar: Grammar): string {
  switch (grammar.type) {
    case 'json_object':
      return '';
    case 'json_schema':
    case 'llguidance':
      return typeof grammar.value === 'string' ? grammar.value : JSON.stringify(grammar.value);
    default:
      return grammar.value;
  }
}
