/**
 * The responses kept for `previous_response_id` and `GET /v1/responses/{id}`: in memory only,
 * bounded by count and by bytes (the stored JSON's UTF-8 length), the least recently used
 * going first when either bound is passed. A response larger than the byte bound on its own
 * is not kept at all. Nothing survives a restart.
 */
import type { ChatMessage } from '@mistralrs/core';

/** One kept response. */
export interface StoredResponse {
  /** The response object as `GET /v1/responses/{id}` answers it. */
  response: Readonly<Record<string, unknown>>;
  /** The conversation up to and including this response's output (instructions excluded). */
  conversation: readonly ChatMessage[];
  /** This request's input items, each with an id, for `GET /v1/responses/{id}/input_items`. */
  inputItems: readonly Readonly<Record<string, unknown>>[];
}

export interface ResponseStoreOptions {
  maxEntries: number;
  maxBytes: number;
}

export class ResponseStore {
  readonly #entries = new Map<string, { value: StoredResponse; bytes: number }>();
  #bytes = 0;

  constructor(readonly options: ResponseStoreOptions) {}

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Keeps `value` under `id`; returns false when it alone is past the byte bound. */
  set(id: string, value: StoredResponse): boolean {
    this.delete(id);
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > this.options.maxBytes || this.options.maxEntries < 1) return false;
    this.#entries.set(id, { value, bytes });
    this.#bytes += bytes;
    // Map keeps insertion order: the first key is the least recently used.
    for (const [oldest, entry] of this.#entries) {
      if (this.#entries.size <= this.options.maxEntries && this.#bytes <= this.options.maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= entry.bytes;
    }
    return true;
  }

  /** The response, marked as used most recently; undefined when never kept or evicted. */
  get(id: string): StoredResponse | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    return entry.value;
  }

  delete(id: string): boolean {
    const entry = this.#entries.get(id);
    if (!entry) return false;
    this.#entries.delete(id);
    this.#bytes -= entry.bytes;
    return true;
  }
}
