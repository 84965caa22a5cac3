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
  await writeBytesAtomic(file, encodeCheckpoint(ck));
}

/** A checkpoint as bytes (the layout above), for files and for stores that keep blobs. */
export function encodeCheckpoint(ck: Checkpoint): Uint8Array {
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
  return bytes;
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
  return decodeCheckpoint(bytes, `'${file}'`);
}

/** Parses checkpoint bytes; `name` says where they came from, for errors. */
export function decodeCheckpoint(data: Uint8Array, name: string): Checkpoint {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const bad = (why: string) => new UserError(`${name} is not a valid checkpoint (${why})`, { code: 'unreadable', field: 'resume' });
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

/** The state of a run that a checkpoint keeps (what the loop saves and restores). */
export type CheckpointState = Omit<Checkpoint, 'fingerprint'>;

/**
 * Where a run's resumable state lives: a file beside the output, one file per
 * batch item, a blob in a shared store. `read` refuses a checkpoint of
 * another job (its fingerprint differs).
 */
export interface CheckpointStore {
  /** For messages: where the checkpoint is. */
  readonly name: string;
  read(): Promise<CheckpointState | undefined>;
  write(state: CheckpointState): Promise<void>;
  /** The run finished: its checkpoint is no longer needed. */
  clear(): Promise<void>;
}

/** Checks that a checkpoint belongs to the job with `fingerprint`. */
export function checkFingerprint(ck: Checkpoint, fingerprint: string, name: string): CheckpointState {
  if (ck.fingerprint !== fingerprint)
    throw new UserError(`checkpoint ${name} belongs to a different job (inputs, size, loss or weights differ)`, { code: 'conflict', field: 'resume' });
  return ck;
}

/** The checkpoint of one job in one file (`nst render`: <out>.ckpt). */
export function fileCheckpointStore(file: string, fingerprint: string): CheckpointStore {
  return {
    name: `'${file}'`,
    async read() {
      const ck = await readCheckpoint(file);
      return ck && checkFingerprint(ck, fingerprint, `'${file}'`);
    },
    write: (state) => writeCheckpoint(file, { fingerprint, ...state }),
    clear: () => fs.rm(file, { force: true }),
  };
}

/**
 * One checkpoint per batch item, each in its own store, so that an item can
 * later resume in another batch (or alone). Items resumed together must have
 * reached the same iteration (their Adam step sizes are shared).
 */
export function itemCheckpointStore(items: readonly CheckpointStore[]): CheckpointStore {
  const name = items.map((s) => s.name).join(', ');
  return {
    name,
    async read() {
      const states = await Promise.all(items.map((s) => s.read()));
      if (states.every((s) => s === undefined)) return undefined;
      const first = states[0];
      if (!first || states.some((s) => s === undefined || s.iteration !== first.iteration || s.images.length !== first.images.length))
        throw new UserError(`checkpoints ${name} are not all at the same iteration: resume them separately`, { code: 'conflict', field: 'resume' });
      const join = (key: 'images' | 'm' | 'v') => {
        const out = new Float32Array(first.images.length * items.length);
        states.forEach((s, k) => out.set(s![key], k * first.images.length));
        return out;
      };
      return { iteration: first.iteration, images: join('images'), m: join('m'), v: join('v') };
    },
    async write(state) {
      const n = state.images.length / items.length;
      const part = (a: Float32Array, k: number) => a.subarray(k * n, (k + 1) * n);
      await Promise.all(items.map((s, k) => s.write({ iteration: state.iteration, images: part(state.images, k), m: part(state.m, k), v: part(state.v, k) })));
    },
    async clear() {
      await Promise.all(items.map((s) => s.clear()));
    },
  };
}
