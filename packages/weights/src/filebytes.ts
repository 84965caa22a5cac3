import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { MemoryBudget } from './budget.js';
import { check, fail } from './errors.js';

const CHUNK = 1 << 20;

/** What a non-regular file is, for messages. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Opens `path` for reading only if it is a regular file. The open itself is
 * non-blocking (opening a FIFO with no writer would otherwise wait forever)
 * and the check is made on the opened descriptor, so a path swapped between
 * a check and the open cannot slip a pipe or a device past it.
 */
export async function openRegular(path: string, what = 'the file'): Promise<{ fh: FileHandle; size: number }> {
  const refuse = (st: Stats) => fail(`${what} is ${kindOf(st)}, not a regular file; refusing to read it`, 'WEIGHTS_NOT_REGULAR_FILE', what);
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    // A socket cannot be opened at all (ENXIO): say what it is rather than the errno.
    const st = await stat(path).catch(() => undefined);
    if (st && !st.isFile()) refuse(st);
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) refuse(st);
    return { fh, size: st.size };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/**
 * Random access to a large file (the .pth and .mat files reach 550 MB): reads
 * exactly the ranges asked for, each checked against the file's size and
 * charged to the load's memory budget first, so a corrupt offset or length
 * can never cause a huge allocation.
 */
export class FileBytes {
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    /** What every read and every buffer sized by this file's content is charged to. */
    readonly budget: MemoryBudget,
  ) {}

  static async open(path: string, budget = new MemoryBudget(), what?: string): Promise<FileBytes> {
    const { fh, size } = await openRegular(path, what);
    return new FileBytes(fh, size, budget);
  }

  async read(offset: number, length: number, what: string): Promise<Buffer> {
    check(
      Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.size,
      () => `${what} (bytes ${offset}..${offset + length}) lies beyond the end of the file (${this.size} bytes)`,
    );
    this.budget.take(length, what);
    return this.readUncharged(offset, length, what);
  }

  private async readUncharged(offset: number, length: number, what: string): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      check(bytesRead > 0, `${what}: the file ended early`);
      done += bytesRead;
    }
    return buf;
  }

  /**
   * The bytes [offset, offset + length) as a stream of chunks (the handle
   * stays open). The chunks are not charged: whoever keeps them charges what it keeps.
   */
  stream(offset: number, length: number): Readable {
    check(offset >= 0 && length >= 0 && offset + length <= this.size, `bytes ${offset}..${offset + length} lie beyond the end of the file`);
    const self = this;
    return ReadableStream.from(
      (async function* () {
        for (let p = offset; p < offset + length; p += CHUNK)
          yield await self.readUncharged(p, Math.min(CHUNK, offset + length - p), 'a data chunk');
      })(),
      { objectMode: false },
    );
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Runs `fn` with the file open, closing it afterwards. */
export async function withFile<T>(path: string, fn: (f: FileBytes) => Promise<T>, budget?: MemoryBudget, what?: string): Promise<T> {
  const f = await FileBytes.open(path, budget, what);
  try {
    return await fn(f);
  } finally {
    await f.close();
  }
}

/** The whole of a regular file, charged to `budget` before it is read. */
export async function readWholeFile(path: string, budget: MemoryBudget, what: string): Promise<Buffer> {
  return withFile(path, (f) => f.read(0, f.size, what), budget, what);
}
