/**
 * Bounds on what one request may ask for. Each is checked before the engine sees the request,
 * so abuse costs a fast 400 rather than memory or minutes of compute.
 */
export interface ServerLimits {
  /** Largest request body accepted, in bytes (413 above it). */
  maxBodyBytes: number;
  /** Deepest nesting of objects and arrays in a body (a JSON schema's included). */
  maxJsonDepth: number;
  /** Most choices one request may ask for: `n` times the number of prompts. */
  maxChoices: number;
  /** Most alternatives per token for `top_logprobs` (chat) and `logprobs` (completions). */
  maxTopLogprobs: number;
  /** Most stop strings per request. */
  maxStopStrings: number;
  /** Longest stop string, in characters. */
  maxStopChars: number;
  /** Most `logit_bias` entries per request. */
  maxLogitBiasEntries: number;
  /** Most tools a chat request may offer (OpenAI's cap is 128). */
  maxTools: number;
  /** Most responses `/v1/responses` keeps for `previous_response_id` (least recently used go first). */
  maxStoredResponses: number;
  /** Most bytes of stored responses (their JSON) `/v1/responses` keeps. */
  maxStoredResponseBytes: number;
}

/** The defaults: OpenAI's own caps where it has one (4 stops, 20 top logprobs). */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxBodyBytes: 4 * 1024 * 1024,
  // Below serde_json's 128, so a schema is refused here, with the field named.
  maxJsonDepth: 100,
  maxChoices: 16,
  maxTopLogprobs: 20,
  maxStopStrings: 4,
  maxStopChars: 256,
  maxLogitBiasEntries: 1024,
  maxTools: 128,
  maxStoredResponses: 1000,
  maxStoredResponseBytes: 64 * 1024 * 1024,
});

const UNITS: Readonly<Record<string, number>> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/**
 * A byte size as written on a command line: `4194304`, `512kb`, `4mb`, `1gb` (powers of 1024,
 * as body-parser reads them). Throws on anything else.
 */
export function parseByteSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(text);
  const value = match ? Number(match[1]) * UNITS[(match[2] ?? 'b').toLowerCase()]! : NaN;
  if (!Number.isFinite(value) || value < 1) {
    throw new RangeError(`${JSON.stringify(text)} is not a byte size (write e.g. 4194304, 512kb or 4mb)`);
  }
  return Math.floor(value);
}
