/**
 * Errors raised by the native layer. The binding prefixes each message with `[Code] `; this
 * module turns that into a typed error with a stable `code` for callers to branch on.
 */
export type MistralrsErrorCode = 'IoError' | 'FormatError' | 'UnsupportedTypeError' | 'InvalidArgumentError' | 'InternalError';

export class MistralrsError extends Error {
  override readonly name = 'MistralrsError';
  constructor(
    readonly code: MistralrsErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const PREFIX = /^\[(\w+)\] ([\s\S]*)$/;

/** Converts an error thrown by a binding into a `MistralrsError` (others pass through). */
export function fromNativeError(error: unknown): unknown {
  // Duck-typed: errors made by the addon belong to the main realm, which `instanceof` misses
  // inside vm contexts (jest, REPL sandboxes).
  const message = (error as { message?: unknown } | null)?.message;
  if (typeof message !== 'string') return error;
  const match = PREFIX.exec(message);
  if (!match) return error;
  return new MistralrsError(match[1] as MistralrsErrorCode, match[2] ?? '', { cause: error });
}

/** Runs a binding call (sync or async), rethrowing its errors as `MistralrsError`. */
export async function callNative<T>(call: () => T | Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw fromNativeError(error);
  }
}

export function callNativeSync<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw fromNativeError(error);
  }
}
