import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expireStored, folderStore, getInput, inputKey, isStoreUnavailable, s3Store, type BlobStore } from '@nst/server';
import { freePort, s3Client, startS3, type Proc } from './helpers.js';

// One contract, two stores: a folder, and a bucket on a real S3-protocol server (s3rver in its own process,
// on loopback) reached through the AWS SDK with path-style addressing, as MinIO, Ceph or R2 would be.
const procs: Proc[] = [];
let s3: Awaited<ReturnType<typeof startS3>>;
beforeAll(async () => {
  s3 = await startS3();
  procs.push(s3.proc);
});
afterAll(async () => {
  for (const p of procs) await p.stop();
});

const client = s3Client;

const stores: [string, () => BlobStore][] = [
  ['a folder', () => folderStore(path.join(mkdtempSync(path.join(tmpdir(), 'nst-contract-')), 'store'))],
  // A small multipart threshold, so that "large" blobs go up in parts here too.
  [
    'an S3 bucket',
    () =>
      s3Store(`s3://nst/run-${Math.random().toString(36).slice(2)}`, {
        client: client(s3.url),
        multipartBytes: 6 * 2 ** 20,
        partBytes: 5 * 2 ** 20,
      }),
  ],
];

describe.each(stores)('the store contract: %s', (_name, make) => {
  const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);

  it('answers undefined for a key with nothing, and gives back what was put', async () => {
    const store = make();
    expect(await store.get('results/none.png')).toBeUndefined();
    await store.put('previews/a.jpg', bytes(10, 1));
    expect(await store.get('previews/a.jpg')).toEqual(bytes(10, 1));
    await store.put('previews/a.jpg', bytes(5, 2));
    expect(await store.get('previews/a.jpg')).toEqual(bytes(5, 2));
  });

  it('writes once: a repeated putOnce finds the first bytes and changes nothing', async () => {
    const store = make();
    expect(await store.putOnce('results/x.png', bytes(100, 3))).toBe(true);
    expect(await store.putOnce('results/x.png', bytes(100, 4))).toBe(false);
    expect(await store.putOnce('results/x.png', bytes(7, 5))).toBe(false);
    expect(await store.get('results/x.png')).toEqual(bytes(100, 3));
  });

  it('gives back an input only when its bytes are the ones its key names; a damaged copy is a store failure', async () => {
    const store = make();
    const image = bytes(64, 7);
    const key = inputKey(image);
    expect(await getInput(store, key)).toBeUndefined();
    await store.put(key, image.subarray(0, 40)); // a copy cut short
    const e = await getInput(store, key).catch((err: unknown) => err);
    expect(isStoreUnavailable(e), String(e)).toBe(true);
    await store.put(key, image);
    expect(await getInput(store, key)).toEqual(image);
  });

  it('writes a large blob (in parts on S3) once, whole', async () => {
    const store = make();
    const big = new Uint8Array(13 * 2 ** 20).map((_, i) => i % 251);
    expect(await store.putOnce('results/big.png', big)).toBe(true);
    expect(await store.putOnce('results/big.png', bytes(big.length, 0))).toBe(false);
    expect(Buffer.from((await store.get('results/big.png'))!).equals(Buffer.from(big))).toBe(true);
    await store.put('checkpoints/big.ckpt', big);
    expect((await store.get('checkpoints/big.ckpt'))!.length).toBe(big.length);
  }, 60_000);

  it('deletes (nothing there is no error) and lists a folder with the times written', async () => {
    const store = make();
    await store.put('inputs/aa', bytes(3, 1));
    await store.put('inputs/bb', bytes(3, 2));
    await store.put('results/cc.png', bytes(3, 3));
    await store.delete('inputs/aa');
    await store.delete('inputs/never');
    const listed = [];
    for await (const b of store.list('inputs')) listed.push(b);
    expect(listed.map((b) => b.key)).toEqual(['inputs/bb']);
    expect(Math.abs(listed[0].modified.getTime() - Date.now())).toBeLessThan(60_000);
    // Retention removes what is older than it keeps, in every folder it looks after.
    expect(await expireStored(store, 3_600_000)).toBe(0);
    expect(await expireStored(store, 3_600_000, Date.now() + 2 * 3_600_000)).toBe(2);
    expect(await store.get('results/cc.png')).toBeUndefined();
  });

  it('refuses keys it did not make', async () => {
    const store = make();
    await expect(store.get('../etc/passwd')).rejects.toThrow(/invalid store key/);
    await expect(store.put('/abs', bytes(1, 1))).rejects.toThrow(/invalid store key/);
  });
});

describe('an S3 store that cannot serve', () => {
  it('is unavailable, with no endpoint, bucket or key in its message, when the endpoint does not answer or refuses the credentials', async () => {
    const gone = s3Store('s3://nst/x', { client: client(`http://127.0.0.1:${await freePort()}`) });
    const refused = s3Store('s3://nst/x', { client: client(s3.url, 'WRONGKEY') });
    for (const [store, code] of [
      [gone, /ECONNREFUSED/],
      [refused, /InvalidAccessKeyId|AccessDenied|SignatureDoesNotMatch/],
    ] as const) {
      for (const op of [() => store.get('results/a.png'), () => store.putOnce('results/a.png', new Uint8Array(3))]) {
        const e = await op().then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(isStoreUnavailable(e), String(e)).toBe(true);
        expect((e as Error).message).toMatch(code);
        expect((e as Error).message).not.toMatch(/127\.0\.0\.1|nst\/x|results/);
      }
    }
  });

  it('is named in the form s3://bucket/prefix', () => {
    expect(() => s3Store('s3://A_B/x')).toThrow(/is not s3:\/\/bucket\/prefix/);
  });
});
