import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { writeBytesAtomic } from './atomic.js';
import { UserError } from '@nst/core';

/**
 * A resumable snapshot of a run: the images being optimised, the Adam
 * moments and the iteration reached, plus a fingerprint of everything that
 * defines the run (inputs, size, loss, weights) so that a checkpoint is never
 * resumed into a different job.
 *
 * Layout (format 2): "NSTCKPT2", u32 header length, JSON header, then images,
 * m, v as float32 little-endian, then the SHA-256 of every byte before it.
 * A checkpoint whose checksum does not match is refused: resuming from a
 * corrupted one would continue a silently broken image. Format 1 (NSTCKPT1,
 * no checksum) is refused with a message saying so rather than trusted: it
 * only saves a restart of an interrupted run.
 */
export interface Checkpoint {
  readonly fingerprint: string;
  readonly iteration: number;
  readonly images: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
}

const MAGIC = 'NSTCKPT2';
const OLD_MAGIC = 'NSTCKPT1';
const PREFIX = 12; // magic + u32 header length
const DIGEST = 32;
/** A header is a few hundred bytes; anything much larger is not one of ours. */
const MAX_HEADER = 1 << 16;

export async function writeCheckpoint(file: string, ck: Checkpoint): Promise<void> {
  const header = Buffer.from(
    JSON.stringify({ fingerprint: ck.fingerprint, iteration: ck.iteration, length: ck.images.length }),
    'utf8',
  );
  const n = ck.images.length;
  const bytes = new Uint8Array(PREFIX + header.length + 3 * 4 * n + DIGEST);
  bytes.set(Buffer.from(MAGIC, 'latin1'), 0);
  new DataView(bytes.buffer).setUint32(8, header.length, true);
  bytes.set(header, PREFIX);
  let at = PREFIX + header.length;
  for (const a of [ck.images, ck.m, ck.v]) {
    bytes.set(new Uint8Array(a.buffer, a.byteOffset, 4 * n), at);
    at += 4 * n;
  }
  bytes.set(createHash('sha256').update(bytes.subarray(0, at)).digest(), at);
  await writeBytesAtomic(file, bytes);
}

/** What the first bytes of a file say it is. */
export type CheckpointKind =
  | { kind: 'none' }
  | { kind: 'checkpoint'; fingerprint: string; iteration: number; length: number }
  | { kind: 'old-checkpoint' }
  | { kind: 'other'; why: string };

/**
 * Reads only the magic and the header: enough to know whether `file` is an
 * nst checkpoint, and of which job, without reading (or trusting) the body.
 * Never throws for a file that exists but is something else.
 */
export async function inspectCheckpoint(file: string): Promise<CheckpointKind> {
  let fh: fs.FileHandle;
  try {
    const st = await fs.lstat(file);
    if (st.isDirectory()) return { kind: 'other', why: 'it is a folder' };
    if (!st.isFile()) return { kind: 'other', why: 'it is not a regular file' };
    fh = await fs.open(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'none' };
    return { kind: 'other', why: `it cannot be read (${code})` };
  }
  try {
    const head = Buffer.alloc(PREFIX);
    const { bytesRead } = await fh.read(head, 0, PREFIX, 0);
    const magic = head.toString('latin1', 0, 8);
    if (bytesRead === PREFIX && magic === OLD_MAGIC) return { kind: 'old-checkpoint' };
    if (bytesRead < PREFIX || magic !== MAGIC) return { kind: 'other', why: 'it is not an nst checkpoint' };
    const headerLength = head.readUInt32LE(8);
    if (headerLength > MAX_HEADER) return { kind: 'other', why: 'its header is implausibly long' };
    const header = Buffer.alloc(headerLength);
    await fh.read(header, 0, headerLength, PREFIX);
    const parsed = parseHeader(header);
    return parsed ? { kind: 'checkpoint', ...parsed } : { kind: 'other', why: 'its header is corrupt' };
  } finally {
    await fh.close();
  }
}

function parseHeader(bytes: Buffer): { fingerprint: string; iteration: number; length: number } | undefined {
  try {
    const h = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    if (typeof h.fingerprint !== 'string') return undefined;
    if (!Number.isSafeInteger(h.iteration) || (h.iteration as number) < 0) return undefined;
    if (!Number.isSafeInteger(h.length) || (h.length as number) <= 0) return undefined;
    return { fingerprint: h.fingerprint, iteration: h.iteration as number, length: h.length as number };
  } catch {
    return undefined;
  }
}

/**
 * Reads a checkpoint; undefined when the file does not exist. `expectedLength`
 * (floats per array), when given, bounds the read: a file of any other size is
 * refused before its bytes are loaded.
 */
export async function readCheckpoint(file: string, expectedLength?: number): Promise<Checkpoint | undefined> {
  const bad = (why: string) => new UserError(`'${file}' is not a valid checkpoint (${why})`, { code: 'unreadable', field: 'resume' });
  const what = await inspectCheckpoint(file);
  if (what.kind === 'none') return undefined;
  if (what.kind === 'old-checkpoint')
    throw new UserError(`'${file}' is a checkpoint of an older nst, without a checksum: delete it to start again`, { code: 'unsupported', field: 'resume' });
  if (what.kind === 'other') throw bad(what.why);
  const n = what.length;
  if (expectedLength !== undefined && n !== expectedLength) throw bad(`it holds ${n} values per image array, this job ${expectedLength}`);
  let bytes: Buffer;
  try {
    const fh = await fs.open(file, 'r');
    try {
      const st = await fh.stat();
      const headerSize = (await fh.read(Buffer.alloc(4), 0, 4, 8)).buffer.readUInt32LE(0);
      if (st.size !== PREFIX + headerSize + 12 * n + DIGEST) throw bad('wrong length: truncated or padded');
      bytes = Buffer.alloc(st.size);
      await fh.read(bytes, 0, st.size, 0);
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot read checkpoint '${file}' (${(e as NodeJS.ErrnoException).code})`, { code: 'unreadable', field: 'resume' });
  }
  const end = bytes.length - DIGEST;
  const digest = createHash('sha256').update(bytes.subarray(0, end)).digest();
  if (!digest.equals(bytes.subarray(end))) throw bad('checksum mismatch: the file is corrupted');
  const at = end - 12 * n;
  // Copy into fresh, aligned arrays.
  const read = (k: number) => {
    const out = new Float32Array(n);
    Buffer.from(out.buffer).set(bytes.subarray(at + 4 * n * k, at + 4 * n * (k + 1)));
    return out;
  };
  return { fingerprint: what.fingerprint, iteration: what.iteration, images: read(0), m: read(1), v: read(2) };
}
