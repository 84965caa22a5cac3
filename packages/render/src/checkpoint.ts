import { promises as fs } from 'node:fs';
import { writeBytesAtomic } from '@nst/files';
import { UserError } from '@nst/core';

/**
 * A resumable snapshot of a run: the images being optimised, the Adam
 * moments and the iteration reached, plus a fingerprint of everything that
 * defines the run (inputs, size, loss, weights) so that a checkpoint is never
 * resumed into a different job. Layout: "NSTCKPT1", u32 header length, JSON
 * header, then images, m, v as float32 little-endian.
 */
export interface Checkpoint {
  readonly fingerprint: string;
  readonly iteration: number;
  readonly images: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
}

const MAGIC = 'NSTCKPT1';

export async function writeCheckpoint(file: string, ck: Checkpoint): Promise<void> {
  const header = Buffer.from(
    JSON.stringify({ fingerprint: ck.fingerprint, iteration: ck.iteration, length: ck.images.length }),
    'utf8',
  );
  const n = ck.images.length;
  const bytes = new Uint8Array(8 + 4 + header.length + 3 * 4 * n);
  bytes.set(Buffer.from(MAGIC, 'latin1'), 0);
  new DataView(bytes.buffer).setUint32(8, header.length, true);
  bytes.set(header, 12);
  const body = Buffer.concat([
    Buffer.from(ck.images.buffer, ck.images.byteOffset, 4 * n),
    Buffer.from(ck.m.buffer, ck.m.byteOffset, 4 * n),
    Buffer.from(ck.v.buffer, ck.v.byteOffset, 4 * n),
  ]);
  bytes.set(body, 12 + header.length);
  await writeBytesAtomic(file, bytes);
}

/** Reads a checkpoint; undefined when the file does not exist. */
export async function readCheckpoint(file: string): Promise<Checkpoint | undefined> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserError(`cannot read checkpoint '${file}' (${(e as NodeJS.ErrnoException).code})`, { code: 'unreadable', field: 'resume' });
  }
  const bad = (why: string) => new UserError(`'${file}' is not a valid checkpoint (${why})`, { code: 'unreadable', field: 'resume' });
  if (bytes.length < 12 || bytes.toString('latin1', 0, 8) !== MAGIC) throw bad('bad magic');
  const headerLength = bytes.readUInt32LE(8);
  if (12 + headerLength > bytes.length) throw bad('truncated header');
  let header: { fingerprint: string; iteration: number; length: number };
  try {
    header = JSON.parse(bytes.toString('utf8', 12, 12 + headerLength));
  } catch {
    throw bad('corrupt header');
  }
  const n = header.length;
  if (!Number.isInteger(n) || n <= 0 || 12 + headerLength + 12 * n !== bytes.length) throw bad('wrong length');
  if (!Number.isInteger(header.iteration) || header.iteration < 0) throw bad('bad iteration');
  const at = 12 + headerLength;
  // Copy into fresh, aligned arrays.
  const read = (k: number) => {
    const out = new Float32Array(n);
    Buffer.from(out.buffer).set(bytes.subarray(at + 4 * n * k, at + 4 * n * (k + 1)));
    return out;
  };
  return { fingerprint: header.fingerprint, iteration: header.iteration, images: read(0), m: read(1), v: read(2) };
}
