/**
 * Problems with the bytes of a weight file. Parsers throw FormatError with a
 * message about the content only; loadWeights prefixes the file's path and
 * turns it into core's UserError, so every message a user sees names the file.
 */
export class FormatError extends Error {
  override readonly name = 'FormatError';
}

export function fail(message: string): never {
  throw new FormatError(message);
}

export function check(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) fail(typeof message === 'string' ? message : message());
}

/** A safe integer in [min, max], else a FormatError naming `what`. */
export function checkInt(value: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    fail(`${what} is ${describeValue(value)}, expected an integer in ${min}..${max}`);
  return value;
}

function describeValue(v: unknown): string {
  const s = typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

/** A message on one line: control characters (a corrupt file's bytes quoted in a JSON error) become spaces. */
export function oneLine(message: string): string {
  return message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ');
}
