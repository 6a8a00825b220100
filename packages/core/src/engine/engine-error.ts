/** What the engine refuses or fails with, by a stable `code`. */
export type EngineErrorCode =
  | 'PromptTooLongError'
  | 'InvalidArgumentError'
  | 'EngineClosedError'
  | 'OverloadedError'
  /** The model's output for this request was not finite (NaN or infinite logits): the model's
   * fault, not the request's; the request is stopped and nothing is sampled from it. */
  | 'ModelOutputError';

/** A count option: `fallback` when absent, else a positive integer (an `InvalidArgumentError` naming it otherwise). */
export function positiveOption(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new EngineError('InvalidArgumentError', `${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/** Why the engine refused or failed a request; `code` is stable, the message says what to fix. */
export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
  }
}
