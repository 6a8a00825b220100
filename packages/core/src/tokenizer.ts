import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { callNative, callNativeSync } from '@mistralrs/napi-support';

import { binding, type Binding } from './native.js';

export interface EncodeOptions {
  /** Add the model's BOS/EOS (per its add_bos/add_eos flags; CLS/SEP for BERT). Default true. */
  addSpecialTokens?: boolean;
  /**
   * Recognise special-token text such as `<|im_start|>` as the special token. Default false:
   * user text is never turned into control tokens unless asked (a rendered chat template is).
   */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop control tokens (BOS, EOS, …) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

export type TokenType = 'normal' | 'unknown' | 'control' | 'user_defined' | 'unused' | 'byte';

/**
 * A model's tokenizer, native: from a GGUF file's `tokenizer.ggml.*` metadata (SentencePiece,
 * byte-level BPE with its pre-tokenizer, WordPiece, Unigram) or from a Hugging Face
 * `tokenizer.json`.
 */
export class Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  /** Tokens that end generation (EOS, EOT, EOM …). */
  readonly eosIds: readonly number[];
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** `llama`, `gpt2`, `bert`, `t5` (from GGUF) or `tokenizer.json`. */
  readonly kind: string;

  /** @internal The native tokenizer (grammar compilation reads its vocabulary). */
  readonly handle: Binding.TokenizerHandle;
  #textBound: Binding.TextBound | null | undefined;
  /** DRY breaker lists already read against this vocabulary, by their JSON. */
  readonly #dryBreakers = new Map<string, Promise<number[][]>>();

  private constructor(handle: Binding.TokenizerHandle) {
    this.handle = handle;
    const info = handle.info();
    this.vocabSize = info.vocabSize;
    this.bosId = info.bosId ?? undefined;
    this.eosIds = info.eosIds;
    this.addBos = info.addBos;
    this.addEos = info.addEos;
    this.kind = info.kind;
  }

  /** The tokenizer embedded in a GGUF file. */
  static async fromGguf(path: string): Promise<Tokenizer> {
    return Tokenizer.#shared([path], () => binding.tokenizerFromGguf(path));
  }

  /** A Hugging Face folder's `tokenizer.json`, with its `tokenizer_config.json` when there is one. */
  static fromFolder(dir: string): Promise<Tokenizer> {
    const config = join(dir, 'tokenizer_config.json');
    return Tokenizer.fromFile(join(dir, 'tokenizer.json'), existsSync(config) ? { config } : {});
  }

  /** A Hugging Face `tokenizer.json`, with its `tokenizer_config.json` when given. */
  static async fromFile(tokenizerJson: string, options: { config?: string } = {}): Promise<Tokenizer> {
    const files = options.config === undefined ? [tokenizerJson] : [tokenizerJson, options.config];
    return Tokenizer.#shared(files, () => binding.tokenizerFromFile(tokenizerJson, options.config));
  }

  /**
   * @internal The live tokenizer of a GGUF (one an engine on the same file still holds), or
   * undefined: then the model's load builds it from its own open file (`fromLoadedModel`).
   */
  static async liveOfGguf(path: string): Promise<Tokenizer | undefined> {
    const key = await stampKey([path]);
    return key === undefined ? undefined : liveTokenizers.get(key)?.deref();
  }

  /** @internal The tokenizer a model built from its GGUF while loading (`take`), shared as `fromGguf`'s. */
  static async fromLoadedModel(path: string, take: () => Binding.TokenizerHandle | null): Promise<Tokenizer> {
    return Tokenizer.#shared([path], async () => take() ?? binding.tokenizerFromGguf(path));
  }

  /**
   * The tokenizer of `files` that is still alive, if any, else a new one from `load`. Loading
   * a model again (an engine closed and reopened, two engines on one file) then shares the
   * tables, a hundred megabytes for a 262k vocabulary, instead of building another copy while
   * the old one waits for the collector. Tokenizers are immutable, so sharing is safe.
   */
  static async #shared(files: string[], load: () => Promise<Binding.TokenizerHandle>): Promise<Tokenizer> {
    const key = await stampKey(files);
    // A file that cannot be read is the native loader's to report.
    if (key === undefined) return new Tokenizer(await callNative(load));
    const known = liveTokenizers.get(key)?.deref();
    if (known) return known;
    const tokenizer = new Tokenizer(await callNative(load));
    liveTokenizers.set(key, new WeakRef(tokenizer));
    forgetTokenizer.register(tokenizer, key);
    return tokenizer;
  }

  /** Token ids of `text`. Synchronous: fine for prompts; use `encodeAsync` for long documents. */
  encode(text: string, options: EncodeOptions = {}): Uint32Array {
    const { addSpecialTokens = true, parseSpecial = false } = options;
    return callNativeSync(() => this.handle.encode(text, addSpecialTokens, parseSpecial));
  }

  /** `encode` off the JavaScript thread. */
  encodeAsync(text: string, options: EncodeOptions = {}): Promise<Uint32Array> {
    const { addSpecialTokens = true, parseSpecial = false } = options;
    return callNative(() => this.handle.encodeAsync(text, addSpecialTokens, parseSpecial));
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    return callNativeSync(() => this.handle.decode(Uint32Array.from(ids), options.skipSpecialTokens ?? false));
  }

  /** The bytes of text a token stands for (a byte token gives its byte; `▁` gives a space). */
  tokenToBytes(id: number): Uint8Array {
    return callNativeSync(() => this.handle.tokenToPiece(id));
  }

  /** `tokenToBytes` as text (invalid UTF-8 shown as U+FFFD). */
  tokenToPiece(id: number): string {
    return Buffer.from(this.tokenToBytes(id)).toString('utf8');
  }

  /** The token's string as stored in the vocabulary (e.g. `Ġthe`, `▁the`, `<0x0A>`). */
  tokenText(id: number): string {
    return callNativeSync(() => this.handle.tokenText(id));
  }

  tokenType(id: number): TokenType {
    return callNativeSync(() => this.handle.tokenType(id)) as TokenType;
  }

  /**
   * The first id at or past `rows` that text can become (any but a control token), or
   * undefined: a model with `rows` embedding rows cannot take it, so this is not its
   * tokenizer. Control tokens past the rows are allowed: text never spells them (Gemma 3's
   * tokenizer lists `<image_soft_token>` one past the text model's 262144 rows).
   */
  firstTextTokenFrom(rows: number): number | undefined {
    for (let id = rows; id < this.vocabSize; id++) if (this.tokenType(id) !== 'control') return id;
    return undefined;
  }

  /** Why this tokenizer (`name` in the message) is not that of the model at `modelPath` with
   * `rows` embedding rows, or undefined when it may be (see `firstTextTokenFrom`). */
  whyNotFor(rows: number, name: string, modelPath: string): string | undefined {
    const id = this.firstTextTokenFrom(rows);
    if (id === undefined) return undefined;
    return `${name} has token ${id} (${JSON.stringify(this.tokenText(id))}), past the ${rows} rows of ${modelPath}'s embedding: it is not this model's tokenizer`;
  }

  /**
   * A number of tokens that encoding `text` cannot go below, found without tokenizing it
   * (its UTF-8 length over the most bytes one token can stand for), or undefined where the
   * vocabulary allows no such bound (WordPiece, Unigram, a SentencePiece vocabulary that
   * cannot spell every byte). Enough to refuse a prompt far past the context cheaply. The
   * vocabulary is read once, on first use.
   */
  minTokens(text: string): number | undefined {
    if (this.#textBound === undefined) this.#textBound = callNativeSync(() => this.handle.textBound());
    const bound = this.#textBound;
    if (!bound) return undefined;
    if (bound.uncountedBytes.length === 0) return Math.ceil(Buffer.byteLength(text, 'utf8') / bound.bytesPerToken);
    const uncounted = new Uint8Array(256);
    for (const byte of bound.uncountedBytes) uncounted[byte] = 1;
    const utf8 = Buffer.from(text, 'utf8');
    let bytes = 0;
    for (const byte of utf8) bytes += 1 - uncounted[byte]!;
    return Math.ceil(bytes / bound.bytesPerToken);
  }

  /**
   * DRY's sequence breakers (text) as token sequences, head first, the way llama.cpp reads
   * them against the vocabulary: every token containing a breaker is one, and a token ending
   * with a breaker's beginning heads a sequence whose tail is the rest, tokenized. A scan of the
   * whole vocabulary, off the JavaScript thread; remembered per list of breakers.
   */
  drySequenceBreakers(breakers: readonly string[]): Promise<number[][]> {
    const key = JSON.stringify(breakers);
    let sequences = this.#dryBreakers.get(key);
    if (!sequences) {
      sequences = callNative(() => this.handle.drySequenceBreakers([...breakers]));
      // A refused list is not remembered; a few lists in use at once are.
      sequences.catch(() => this.#dryBreakers.delete(key));
      if (this.#dryBreakers.size >= MAX_REMEMBERED_BREAKER_LISTS) {
        this.#dryBreakers.delete(this.#dryBreakers.keys().next().value!);
      }
      this.#dryBreakers.set(key, sequences);
    }
    return sequences;
  }

  /** A decoder for streaming: text comes out only in whole UTF-8 characters. */
  createDecoder(options: DecodeOptions = {}): IncrementalDecoder {
    return new IncrementalDecoder(this.handle.createDecoder(options.skipSpecialTokens ?? false));
  }
}

/** Lists of DRY breakers whose token sequences a tokenizer keeps. */
const MAX_REMEMBERED_BREAKER_LISTS = 16;

/** The files as they are now (a file rewritten in place gets a new tokenizer), or undefined
 * when one cannot be read. */
async function stampKey(files: string[]): Promise<string | undefined> {
  const stamps = await Promise.all(
    files.map(async (file) => {
      const path = resolve(file);
      const info = await stat(path).catch(() => undefined);
      return info && `${path}:${info.size}:${info.mtimeMs}`;
    }),
  );
  return stamps.includes(undefined) ? undefined : stamps.join('|');
}

/** Tokenizers by their files' stamps, while something still holds them. */
const liveTokenizers = new Map<string, WeakRef<Tokenizer>>();
const forgetTokenizer = new FinalizationRegistry<string>((key) => {
  if (liveTokenizers.get(key)?.deref() === undefined) liveTokenizers.delete(key);
});

/** Turns generated token ids into text as they arrive, never splitting a character. */
export class IncrementalDecoder {
  constructor(private readonly handle: Binding.DecoderHandle) {}

  /** The text completed by `id` (often empty while a multi-byte character is pending). */
  push(id: number): string {
    return callNativeSync(() => this.handle.push(id));
  }

  /** Whatever is still held back (an incomplete character becomes U+FFFD). */
  flush(): string {
    return callNativeSync(() => this.handle.flush());
  }
}
