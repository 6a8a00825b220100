/** Why the engine refused or failed a request; `code` is stable, the message says what to fix. */
export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly code: 'PromptTooLongError' | 'InvalidArgumentError' | 'EngineClosedError' | 'OverloadedError',
    message: string,
  ) {
    super(message);
  }
}
