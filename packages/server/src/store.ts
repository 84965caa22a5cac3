import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * Where the server and its workers share files: uploaded inputs (by content
 * hash), checkpoints, previews and results. Keys are made by the server
 * (never taken from a request): lower-case letters, digits, '-', '_', '.'
 * and '/' between segments. A folder implements it (folderStore), and so
 * does an S3-compatible bucket (s3Store, putOnce as a conditional put);
 * test/store-contract.test.ts holds both to the same contract.
 */
export interface BlobStore {
  /** The bytes under `key`, or undefined when there are none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Stores `bytes` under `key`, replacing what was there; readers see the old or the new bytes, never a mix. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Stores `bytes` under `key` unless something is there already: true when this call wrote them. */
  putOnce(key: string, bytes: Uint8Array): Promise<boolean>;
  /** Removes `key`; nothing there is no error. */
  delete(key: string): Promise<void>;
  /** Every blob under the folder `prefix` (a key without its last segment), with when it was written; for retention. */
  list(prefix: string): AsyncIterable<StoredBlob>;
}

/** A blob as `list` tells it. */
export interface StoredBlob {
  readonly key: string;
  readonly modified: Date;
}

/** Why a store cannot serve: out of space (or quota), not writable, or not answering. */
export type StoreTrouble = 'full' | 'read-only' | 'unavailable';

/**
 * A store operation that failed because of the store, not of the request:
 * the disk is full, the folder is read-only, the mount is gone. The message
 * is plain (no path: it may reach an API response); `code` is the system's
 * (ENOSPC, EROFS, ...). Not a UserError: a worker should wait and retry a
 * job that meets one, not fail it; the API answers 507 (full) or 503.
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  constructor(
    readonly trouble: StoreTrouble,
    readonly code: string,
    /** The file-system error, path and all: for the server's log, never for a response. */
    cause?: unknown,
  ) {
    super(
      trouble === 'full'
        ? `the store is full (${code})`
        : trouble === 'read-only'
          ? `the store is not writable (${code})`
          : `the store is not answering (${code})`,
      { cause },
    );
  }
}

export function isStoreUnavailable(e: unknown): e is StoreUnavailableError {
  return e instanceof Error && e.name === 'StoreUnavailableError';
}

const FULL = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);
const READ_ONLY = new Set(['EROFS', 'EACCES', 'EPERM']);

/** A file-system error as a StoreUnavailableError (a failed read is 'unavailable', whatever its code); any other error as it is. */
function storeFailure(e: unknown, reading = false): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) return e;
  if (reading) return new StoreUnavailableError('unavailable', code, e);
  return new StoreUnavailableError(FULL.has(code) ? 'full' : READ_ONLY.has(code) ? 'read-only' : 'unavailable', code, e);
}

const KEY = /^[a-z0-9_-][a-z0-9._-]*(\/[a-z0-9_-][a-z0-9._-]*)*$/;

export function checkKey(key: string): string {
  if (!KEY.test(key) || key.length > 200) throw new Error(`invalid store key '${key}'`);
  return key;
}

/** The store key of an uploaded input: its SHA-256, so that the same image is stored once. */
export function inputKey(bytes: Uint8Array): string {
  return `inputs/${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * An uploaded input read back from the store, checked against its key (its
 * SHA-256): a copy cut short in transit, or read while an S3 server rewrote
 * it, is a store failure to wait out, not a broken image to blame on the
 * user. Undefined when the store no longer has it.
 */
export async function getInput(store: BlobStore, key: string): Promise<Uint8Array | undefined> {
  const bytes = await store.get(key);
  if (bytes && inputKey(bytes) !== key) throw new StoreUnavailableError('unavailable', 'a damaged copy');
  return bytes;
}

/**
 * A BlobStore in a folder (local, or shared between machines over NFS and
 * the like). Writes go to a temporary file in <dir>/.tmp first: `put`
 * renames it over the key, `putOnce` hard-links it to the key, which fails
 * when the key exists, so a second writer never replaces the first. A write
 * that fails removes its temporary file; failures of the file system itself
 * (full, read-only, gone) are StoreUnavailableErrors.
 */
export function folderStore(dir: string): BlobStore {
  const root = path.resolve(dir);
  const tmpDir = path.join(root, TMP_DIR);
  const file = (key: string) => path.join(root, ...checkKey(key).split('/'));
  /** Writes `bytes` to a new temporary file, then hands it to `commit`; the temporary file never outlives the call. */
  const viaTemporary = async <T>(key: string, bytes: Uint8Array, commit: (tmp: string, target: string) => Promise<T>): Promise<T> => {
    const target = file(key);
    const tmp = path.join(tmpDir, `${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await makeFolder(path.dirname(target));
      await makeFolder(tmpDir);
      const fh = await fs.open(tmp, 'w');
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return await commit(tmp, target);
    } catch (e) {
      throw storeFailure(e);
    } finally {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
    }
  };
  return {
    async get(key) {
      try {
        return new Uint8Array(await fs.readFile(file(key)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw storeFailure(e, true);
      }
    },
    put: (key, bytes) => viaTemporary(key, bytes, (tmp, target) => fs.rename(tmp, target)),
    putOnce: (key, bytes) =>
      viaTemporary(key, bytes, async (tmp, target) => {
        try {
          await fs.link(tmp, target);
          return true;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
          throw e;
        }
      }),
    async delete(key) {
      await fs.rm(file(key), { force: true }).catch((e: unknown) => {
        throw storeFailure(e);
      });
    },
    async *list(prefix) {
      const walk = async function* (dir: string, keyPrefix: string): AsyncGenerator<StoredBlob> {
        let entries;
        try {
          entries = await fs.readdir(dir, { withFileTypes: true });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
          throw storeFailure(e, true);
        }
        for (const e of entries) {
          const key = `${keyPrefix}/${e.name}`;
          if (e.isDirectory()) yield* walk(path.join(dir, e.name), key);
          else if (e.isFile()) {
            const stat = await fs.stat(path.join(dir, e.name)).catch(() => undefined);
            if (stat) yield { key, modified: stat.mtime };
          }
        }
      };
      yield* walk(file(prefix), checkKey(prefix));
    },
  };
}

/** `mkdir -p`, but a read-only file system is EROFS, not the ENOENT that Node's recursive mkdir says. */
async function makeFolder(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    // A plain mkdir of the first missing folder tells the real reason.
    let missing = dir;
    while (!(await fs.stat(path.dirname(missing)).catch(() => undefined))) missing = path.dirname(missing);
    await fs.mkdir(missing);
    throw e;
  }
}

/** Where a folder store keeps the files it is writing. */
const TMP_DIR = '.tmp';

/**
 * Removes temporary files older than `maxAgeMs` from a folder store: what a
 * writer killed in the middle of a write left behind (a write that fails
 * removes its own). Older than any write can take, so that a live writer on
 * another machine keeps its file. Returns how many it removed.
 */
export async function sweepTemporaryFiles(dir: string, maxAgeMs = 24 * 3600_000): Promise<number> {
  const tmpDir = path.join(path.resolve(dir), TMP_DIR);
  let names: string[];
  try {
    names = await fs.readdir(tmpDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw storeFailure(e);
  }
  let removed = 0;
  for (const name of names) {
    const stat = await fs.stat(path.join(tmpDir, name)).catch(() => undefined);
    if (stat?.isFile() && Date.now() - stat.mtimeMs > maxAgeMs) {
      await fs.rm(path.join(tmpDir, name), { force: true });
      removed++;
    }
  }
  return removed;
}

/** `store`, with every StoreUnavailableError counted by `onError` (for /metrics) on its way through. */
export function countingErrors(store: BlobStore, onError: () => void): BlobStore {
  const counted =
    <A extends unknown[], R>(op: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await op(...args);
      } catch (e) {
        if (isStoreUnavailable(e)) onError();
        throw e;
      }
    };
  return {
    get: counted(store.get),
    put: counted(store.put),
    putOnce: counted(store.putOnce),
    delete: counted(store.delete),
    list: (prefix) => store.list(prefix),
  };
}
