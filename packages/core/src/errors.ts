/**
 * An error caused by the user's input (a file, a flag, a weight set). The CLI
 * prints its message as one line, without a stack trace, and exits non-zero.
 * Everything else is a bug and keeps its stack under `--debug`.
 */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof Error && e.name === 'UserError';
}
