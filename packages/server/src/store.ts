import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * Where the server and its workers share files: uploaded inputs (by content
 * hash), checkpoints, previews and results. Keys are made by the server
 * (never taken from a request): lower-case letters, digits, '-', '_', '.'
 * and '/' between segments. A folder implements it now; an S3-compatible
 * bucket can implement the same four operations (putOnce as a conditional
 * put, If-None-Match: *).
 */
export interface BlobStore {
  /** The bytes under `key`, or undefined when there are none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Stores `bytes` under `key`, replacing what was there; readers see the old or the new bytes, never a mix. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Stores `bytes` under `key` unless something is there already: true when this call wrote them. */
  putOnce(key: string, bytes: Uint8Array): Promise<boolean>;
  delete(key: string): Promise<void>;
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
 * A BlobStore in a folder (local, or shared between machines over NFS and
 * the like). Writes go to a temporary file in <dir>/.tmp first: `put`
 * renames it over the key, `putOnce` hard-links it to the key, which fails
 * when the key exists, so a second writer never replaces the first.
 */
export function folderStore(dir: string): BlobStore {
  const root = path.resolve(dir);
  const tmpDir = path.join(root, '.tmp');
  const file = (key: string) => path.join(root, ...checkKey(key).split('/'));
  const staged = async (key: string, bytes: Uint8Array): Promise<{ tmp: string; target: string }> => {
    const target = file(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.mkdir(tmpDir, { recursive: true });
    const tmp = path.join(tmpDir, `${process.pid}-${randomBytes(6).toString('hex')}`);
    const fh = await fs.open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return { tmp, target };
  };
  return {
    async get(key) {
      try {
        return new Uint8Array(await fs.readFile(file(key)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    },
    async put(key, bytes) {
      const { tmp, target } = await staged(key, bytes);
      try {
        await fs.rename(tmp, target);
      } catch (e) {
        await fs.rm(tmp, { force: true });
        throw e;
      }
    },
    async putOnce(key, bytes) {
      const { tmp, target } = await staged(key, bytes);
      try {
        await fs.link(tmp, target);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw e;
      } finally {
        await fs.rm(tmp, { force: true });
      }
    },
    async delete(key) {
      await fs.rm(file(key), { force: true });
    },
  };
}
