import { check } from './errors.js';

/**
 * All that loading one weight file may allocate on the word of the file's
 * declared sizes: buffers read, inflated, converted. VGG-19's sixteen convs
 * are 80 MB of float32 (160 MB as float64 storages); the real MatConvNet
 * file inflates ~80 MB up to conv5_4 (a buffer of 128 MB as it grows).
 * 512 MiB leaves room for all of that and keeps a hostile file from taking
 * the machine.
 */
export const MEMORY_BUDGET_BYTES = 512 << 20;

/** Deflate cannot expand data by more than about 1032x; a larger claim is corrupt. */
export const MAX_DEFLATE_RATIO = 1032;

/** One per file load: every allocation sized by the file is charged here first. */
export class MemoryBudget {
  private used = 0;
  constructor(readonly limit = MEMORY_BUDGET_BYTES) {}

  /** Charges `bytes` for `what`, or throws (WEIGHTS_TOO_LARGE) when the file's total would pass the limit. */
  take(bytes: number, what: string): void {
    check(
      Number.isSafeInteger(bytes) && bytes >= 0 && this.used + bytes <= this.limit,
      () => `${what} needs ${bytes} bytes, past the ${this.limit >> 20} MiB one weight file may use (${this.used} bytes already used)`,
      'WEIGHTS_TOO_LARGE',
    );
    this.used += bytes;
  }

  /** Gives back `bytes` charged earlier, once what they paid for is no longer held. */
  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }

  /** Bytes charged so far. */
  get total(): number {
    return this.used;
  }
}
