/**
 * Server-sent events as OpenAI frames them: one `data: <json>\n\n` per chunk, and
 * `data: [DONE]\n\n` at the end. An error after the headers went out can no longer change the
 * status, so it is sent as `data: {"error": {...}}` (openai-node and openai-python raise it as
 * an APIError), followed by `data: [DONE]` as vLLM does: every stream ends with [DONE], so a
 * client never mistakes a cut connection for the end.
 */
import type { Response } from 'express';

import type { ApiError } from './errors.js';

/**
 * The transport of an event stream: the 200 and the event-stream headers when it starts, then
 * frames written as they come, each write waiting while the socket is full (a slow reader
 * holds the generation back instead of filling memory). Every stream format here (OpenAI's
 * chat chunks, Responses' typed events, Anthropic's events) writes through one.
 */
export class EventStreamWriter {
  #started = false;

  constructor(private readonly res: Response) {}

  /** Whether the headers went out (after which errors can only be events). */
  get started(): boolean {
    return this.#started;
  }

  /** False once the response ended or the client went away: writes are then dropped. */
  get writable(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    if (this.res.headersSent) return; // an error response already went out
    this.res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      // Reverse proxies (nginx) would otherwise buffer the stream.
      'X-Accel-Buffering': 'no',
    });
    this.res.flushHeaders();
  }

  /** One `data:` frame, named by an `event:` line when `event` is given. Dropped before `start()`. */
  async send(data: unknown, event?: string): Promise<void> {
    await this.write(`${event === undefined ? '' : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`);
  }

  /** Writes a frame as it is; resolves once the socket can take more. Dropped before `start()`. */
  async write(frame: string): Promise<void> {
    if (!this.#started || !this.writable) return;
    if (this.res.write(frame)) return;
    // Wait for the buffer to drain, or for the connection to go (then nothing drains).
    await new Promise<void>((resolve) => {
      const resume = () => {
        this.res.off('drain', resume).off('close', resume);
        resolve();
      };
      this.res.on('drain', resume).on('close', resume);
    });
  }

  end(): void {
    if (this.writable) this.res.end();
  }
}

/** OpenAI's chat and text completion chunks: `data:` frames ending with `data: [DONE]`. */
export class SseStream {
  readonly #out: EventStreamWriter;

  constructor(res: Response) {
    this.#out = new EventStreamWriter(res);
  }

  /** Whether the headers went out (after which errors can only be events). */
  get started(): boolean {
    return this.#out.started;
  }

  /** False once the response ended or the client went away: writes are then dropped. */
  get writable(): boolean {
    return this.#out.writable;
  }

  start(): void {
    this.#out.start();
  }

  /** Sends one event (after `start()`); resolves once the socket can take more (a slow reader holds us back). */
  async send(data: unknown): Promise<void> {
    await this.#out.send(data);
  }

  async error(error: ApiError): Promise<void> {
    this.start();
    await this.#out.send(error.toBody());
    await this.done();
  }

  async done(): Promise<void> {
    await this.#out.write('data: [DONE]\n\n');
    this.#out.end();
  }
}
