import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { check } from './errors.js';

const CHUNK = 1 << 20;

/**
 * Random access to a large file (the .pth and .mat files reach 550 MB): reads
 * exactly the ranges asked for, each checked against the file's size first,
 * so a corrupt offset or length can never cause a huge allocation.
 */
export class FileBytes {
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<FileBytes> {
    const fh = await open(path, 'r');
    return new FileBytes(fh, (await fh.stat()).size);
  }

  async read(offset: number, length: number, what: string): Promise<Buffer> {
    check(
      Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.size,
      () => `${what} (bytes ${offset}..${offset + length}) lies beyond the end of the file (${this.size} bytes)`,
    );
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      check(bytesRead > 0, `${what}: the file ended early`);
      done += bytesRead;
    }
    return buf;
  }

  /** The bytes [offset, offset + length) as a stream (the handle stays open). */
  stream(offset: number, length: number): Readable {
    check(offset >= 0 && length >= 0 && offset + length <= this.size, `bytes ${offset}..${offset + length} lie beyond the end of the file`);
    const self = this;
    return ReadableStream.from(
      (async function* () {
        for (let p = offset; p < offset + length; p += CHUNK) yield await self.read(p, Math.min(CHUNK, offset + length - p), 'a data chunk');
      })(),
      { objectMode: false },
    );
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Runs `fn` with the file open, closing it afterwards. */
export async function withFile<T>(path: string, fn: (f: FileBytes) => Promise<T>): Promise<T> {
  const f = await FileBytes.open(path);
  try {
    return await fn(f);
  } finally {
    await f.close();
  }
}
