import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { writeBytesAtomic } from '@nst/files';
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
  await writeBytesAtomic(file, encodeCheckpoint(ck));
}

/** A checkpoint as bytes (the layout above), for files and for stores that keep blobs. */
export function encodeCheckpoint(ck: Checkpoint): Uint8Array {
  const header = Buffer.from(JSON.stringify({ fingerprint: ck.fingerprint, iteration: ck.iteration, length: ck.images.length }), 'utf8');
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
  return bytes;
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
  const name = `'${file}'`;
  const what = await inspectCheckpoint(file);
  if (what.kind === 'none') return undefined;
  if (what.kind === 'old-checkpoint') throw oldFormat(name);
  if (what.kind === 'other') throw invalid(name, what.why);
  if (expectedLength !== undefined && what.length !== expectedLength)
    throw invalid(name, `it holds ${what.length} values per image array, this job ${expectedLength}`);
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    throw new UserError(`cannot read checkpoint ${name} (${(e as NodeJS.ErrnoException).code})`, { code: 'unreadable', field: 'resume' });
  }
  return decodeCheckpoint(bytes, name);
}

/** Parses and verifies checkpoint bytes (magic, header, length, checksum); `name` says where they came from. */
export function decodeCheckpoint(data: Uint8Array, name: string): Checkpoint {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length >= 8 && bytes.toString('latin1', 0, 8) === OLD_MAGIC) throw oldFormat(name);
  if (bytes.length < PREFIX || bytes.toString('latin1', 0, 8) !== MAGIC) throw invalid(name, 'it is not an nst checkpoint');
  const headerLength = bytes.readUInt32LE(8);
  if (headerLength > MAX_HEADER || PREFIX + headerLength > bytes.length) throw invalid(name, 'its header is corrupt');
  const header = parseHeader(bytes.subarray(PREFIX, PREFIX + headerLength));
  if (!header) throw invalid(name, 'its header is corrupt');
  const n = header.length;
  if (bytes.length !== PREFIX + headerLength + 12 * n + DIGEST) throw invalid(name, 'wrong length: truncated or padded');
  const end = bytes.length - DIGEST;
  const digest = createHash('sha256').update(bytes.subarray(0, end)).digest();
  if (!digest.equals(bytes.subarray(end))) throw invalid(name, 'checksum mismatch: the file is corrupted');
  const at = end - 12 * n;
  // Copy into fresh, aligned arrays.
  const read = (k: number) => {
    const out = new Float32Array(n);
    Buffer.from(out.buffer).set(bytes.subarray(at + 4 * n * k, at + 4 * n * (k + 1)));
    return out;
  };
  return { fingerprint: header.fingerprint, iteration: header.iteration, images: read(0), m: read(1), v: read(2) };
}

function invalid(name: string, why: string): UserError {
  return new UserError(`${name} is not a valid checkpoint (${why})`, { code: 'unreadable', field: 'resume' });
}

function oldFormat(name: string): UserError {
  return new UserError(`${name} is a checkpoint of an older nst, without a checksum: delete it to start again`, {
    code: 'unsupported',
    field: 'resume',
  });
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
export function checkFingerprint<T extends { readonly fingerprint: string }>(ck: T, fingerprint: string, name: string): T {
  if (ck.fingerprint !== fingerprint)
    throw new UserError(`checkpoint ${name} belongs to a different job (the inputs' contents, size, loss or weights differ)`, {
      code: 'conflict',
      field: 'resume',
    });
  return ck;
}

/**
 * Where one job's checkpoint lives (a file beside its output, a blob in a
 * shared store), before it is known which of the job's scales it belongs
 * to: `peek` says whose it is without reading it, `store` binds it to one
 * fingerprint for the optimisation loop.
 */
export interface CheckpointSlot {
  readonly name: string;
  /** The fingerprint and iteration of the checkpoint there; undefined when there is none. */
  peek(): Promise<{ readonly fingerprint: string; readonly iteration: number } | undefined>;
  store(fingerprint: string): CheckpointStore;
  /** Removes the checkpoint there, whichever job's it is (a fresh start asked for); absent: the slot is never discarded. */
  discard?(): Promise<void>;
}

/** A job's checkpoint file (`<out>.ckpt`). */
export function fileCheckpointSlot(file: string): CheckpointSlot {
  return {
    name: `'${file}'`,
    async peek() {
      const what = await inspectCheckpoint(file);
      if (what.kind === 'none') return undefined;
      if (what.kind === 'old-checkpoint') throw oldFormat(`'${file}'`);
      if (what.kind === 'other') throw invalid(`'${file}'`, what.why);
      return { fingerprint: what.fingerprint, iteration: what.iteration };
    },
    store: (fingerprint) => fileCheckpointStore(file, fingerprint),
    // Only an nst checkpoint (of any job or format), never anything else found at that path.
    async discard() {
      const what = await inspectCheckpoint(file);
      if (what.kind === 'checkpoint' || what.kind === 'old-checkpoint') await fs.rm(file, { force: true });
    },
  };
}

/** The checkpoint of one job in one file (`nst render`: <out>.ckpt). */
export function fileCheckpointStore(file: string, fingerprint: string): CheckpointStore {
  return {
    name: `'${file}'`,
    async read() {
      // The header first: a checkpoint of another job is refused before its body is read.
      const what = await inspectCheckpoint(file);
      if (what.kind === 'checkpoint') checkFingerprint({ fingerprint: what.fingerprint }, fingerprint, `'${file}'`);
      const ck = await readCheckpoint(file);
      return ck && checkFingerprint(ck, fingerprint, `'${file}'`);
    },
    write: (state) => writeCheckpoint(file, { fingerprint, ...state }),
    // Only a file that is an nst checkpoint of this very job, never anything else found at that path.
    async clear() {
      const what = await inspectCheckpoint(file);
      if (what.kind === 'checkpoint' && what.fingerprint === fingerprint) await fs.rm(file, { force: true });
    },
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
        throw new UserError(`checkpoints ${name} are not all at the same iteration: resume them separately`, {
          code: 'conflict',
          field: 'resume',
        });
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
      await Promise.all(
        items.map((s, k) =>
          s.write({ iteration: state.iteration, images: part(state.images, k), m: part(state.m, k), v: part(state.v, k) }),
        ),
      );
    },
    async clear() {
      await Promise.all(items.map((s) => s.clear()));
    },
  };
}
