/**
 * What kind of mistake a UserError reports. Outer layers may act on it (the
 * HTTP API picks a status, the CLI an exit code) without parsing messages.
 */
export type UserErrorCode =
  /** a value that is malformed or out of range */
  | 'invalid'
  /** a file, folder or layer that does not exist */
  | 'not-found'
  /** a file that exists but cannot be read or decoded */
  | 'unreadable'
  /** an output that cannot be written */
  | 'unwritable'
  /** inputs that contradict each other, or an output that would destroy an input */
  | 'conflict'
  /** a request this build or machine cannot serve */
  | 'unsupported'
  /** more memory, pixels or bytes than allowed or available */
  | 'too-large'
  /** the optimisation produced NaN or Inf */
  | 'not-finite';

export interface UserErrorOptions {
  readonly code?: UserErrorCode;
  /**
   * The job field at fault, in camelCase as the job model names it
   * ('contentLayers', 'iterations', 'content', ...). Outer layers turn it into
   * their own name (`--content-layers`, the JSON field `content-layers`).
   */
  readonly field?: string;
  readonly cause?: unknown;
}

/**
 * An error caused by the user's input (a file, a flag, a weight set). Outer
 * layers print it as one line naming the field their way, without a stack
 * trace, and exit non-zero. Everything else is a bug.
 */
export class UserError extends Error {
  override readonly name = 'UserError';
  readonly code: UserErrorCode;
  readonly field: string | undefined;
  /** The message without the field's name. */
  readonly detail: string;
  constructor(detail: string, options: UserErrorOptions = {}) {
    super(options.field ? `${options.field}: ${detail}` : detail, { cause: options.cause });
    this.code = options.code ?? 'invalid';
    this.field = options.field;
    this.detail = detail;
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof Error && e.name === 'UserError';
}

/**
 * The one line a user sees: the field under the caller's name for it, then
 * the detail. `nameField` maps a job field ('contentLayers') to a flag or a
 * JSON field.
 */
export function formatUserError(e: UserError, nameField: (field: string) => string): string {
  return (e.field ? `${nameField(e.field)}: ${e.detail}` : e.detail).split('\n')[0];
}

/** 'contentLayers' -> 'content-layers': the CLI's long option and the HTTP API's field names follow this one rule. */
export function kebabCase(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
