/** A command line that cannot run: main prints its message (no stack trace) and exits with 1. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
