import { UserError, type UserErrorCode } from '@nst/core';

/**
 * What went wrong, for outer layers that act on it (the CLI names a flag for
 * CACHE_DOWNGRADE, an HTTP API picks a status). Messages stay for people.
 */
export type WeightsErrorCode =
  /** The bytes contradict the format (the default). */
  | 'WEIGHTS_CORRUPT'
  /** A declared count or size exceeds the bytes present or the memory budget. */
  | 'WEIGHTS_TOO_LARGE'
  /** A FIFO, device, socket or folder where a file was expected. */
  | 'WEIGHTS_NOT_REGULAR_FILE'
  /** Missing, unreadable, or in no supported format. */
  | 'WEIGHTS_UNREADABLE'
  | 'WEIGHTS_UNKNOWN_FORMAT'
  /** Preprocessing values (mean, std, scale) that are not finite, absurd or of the wrong length. */
  | 'WEIGHTS_BAD_PREPROCESSING'
  /** The cache folder cannot be created or written. */
  | 'WEIGHTS_CACHE_UNWRITABLE'
  /** Importing would replace a cache holding more layers with one holding fewer. */
  | 'WEIGHTS_CACHE_DOWNGRADE';

/**
 * Problems with the bytes of a weight file. Parsers throw FormatError with a
 * message about the content only, a code and, where one is at fault, the
 * field inside the file; loadWeights prefixes the file's path and turns it
 * into a WeightsError, so every message a user sees names the file.
 */
export class FormatError extends Error {
  override readonly name = 'FormatError';
  constructor(
    message: string,
    readonly code: WeightsErrorCode = 'WEIGHTS_CORRUPT',
    /** The offending field inside the file ("data.pkl", "metadata.preprocessing.mean"), when one is. */
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The kind of user error (core's code) each weights reason is. */
const USER_CODE: Record<WeightsErrorCode, UserErrorCode> = {
  WEIGHTS_CORRUPT: 'unreadable',
  WEIGHTS_TOO_LARGE: 'too-large',
  WEIGHTS_NOT_REGULAR_FILE: 'unreadable',
  WEIGHTS_UNREADABLE: 'unreadable',
  WEIGHTS_UNKNOWN_FORMAT: 'unsupported',
  WEIGHTS_BAD_PREPROCESSING: 'invalid',
  WEIGHTS_CACHE_UNWRITABLE: 'unwritable',
  WEIGHTS_CACHE_DOWNGRADE: 'conflict',
};

/**
 * core's UserError (one line, exit status 2, `code` the general kind) with
 * the weights' own reason, the file or folder at fault, and the entry inside
 * it. `field` is core's: the job field at fault, set only where one is (the
 * message itself names the file).
 */
export class WeightsError extends UserError {
  readonly reason: WeightsErrorCode;
  readonly path: string | undefined;
  /** The offending entry inside the file ('__metadata__.preprocessing.mean') or the variable that named a folder ('NST_CACHE_DIR'). */
  readonly entry: string | undefined;
  constructor(message: string, info: { reason: WeightsErrorCode; path?: string; entry?: string; field?: string; cause?: unknown }) {
    super(message, { code: USER_CODE[info.reason], field: info.field, cause: info.cause });
    this.reason = info.reason;
    this.path = info.path;
    this.entry = info.entry;
  }
}

export function fail(message: string, code?: WeightsErrorCode, field?: string): never {
  throw new FormatError(message, code, field);
}

export function check(condition: unknown, message: string | (() => string), code?: WeightsErrorCode, field?: string): asserts condition {
  if (!condition) fail(typeof message === 'string' ? message : message(), code, field);
}

/** A safe integer in [min, max], else a FormatError naming `what`. */
export function checkInt(value: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    fail(`${what} is ${describeValue(value)}, expected an integer in ${min}..${max}`, 'WEIGHTS_CORRUPT', what);
  return value;
}

function describeValue(v: unknown): string {
  const s = typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v));
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

/** A message on one line: control characters (a corrupt file's bytes quoted in a JSON error) become spaces. */
export function oneLine(message: string): string {
  return message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ');
}
