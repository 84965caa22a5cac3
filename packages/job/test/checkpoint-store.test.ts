import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeCheckpoint, encodeCheckpoint, fileCheckpointStore, itemCheckpointStore, readCheckpoint } from '@nst/job';

describe('checkpoint stores', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-ckstore-'));
  const ramp = (n: number, from: number) => Float32Array.from({ length: n }, (_, i) => from + i);

  it('splits a batch into one checkpoint per item and joins them back', async () => {
    const files = ['a', 'b', 'c'].map((x) => path.join(dir, `${x}.ckpt`));
    const store = itemCheckpointStore(files.map((f, k) => fileCheckpointStore(f, `job-${k}`)));
    expect(await store.read()).toBeUndefined();
    await store.write({ iteration: 7, images: ramp(12, 0), m: ramp(12, 100), v: ramp(12, 200) });
    // Item 1 alone: its own quarter of every array, under its own fingerprint.
    const b = await readCheckpoint(files[1]);
    expect(b).toMatchObject({ fingerprint: 'job-1', iteration: 7 });
    expect(Array.from(b!.images)).toEqual([4, 5, 6, 7]);
    expect(Array.from(b!.v)).toEqual([204, 205, 206, 207]);
    const back = await store.read();
    expect(Array.from(back!.m)).toEqual(Array.from(ramp(12, 100)));
    await store.clear();
    expect(await store.read()).toBeUndefined();
  });

  it('refuses items at different iterations, and a checkpoint of another job', async () => {
    const [x, y] = ['x', 'y'].map((n) => path.join(dir, `${n}.ckpt`));
    await fileCheckpointStore(x, 'x').write({ iteration: 3, images: ramp(2, 0), m: ramp(2, 0), v: ramp(2, 0) });
    await fileCheckpointStore(y, 'y').write({ iteration: 5, images: ramp(2, 0), m: ramp(2, 0), v: ramp(2, 0) });
    await expect(itemCheckpointStore([fileCheckpointStore(x, 'x'), fileCheckpointStore(y, 'y')]).read()).rejects.toThrow(
      /not all at the same iteration/,
    );
    await expect(fileCheckpointStore(x, 'other').read()).rejects.toThrow(/^resume: checkpoint '.*x\.ckpt' belongs to a different job/);
  });

  it('encodes to bytes and back bit-exactly', () => {
    const ck = {
      fingerprint: 'f',
      iteration: 2,
      images: Float32Array.of(1.5, -0),
      m: Float32Array.of(1e-30, 3),
      v: Float32Array.of(Infinity, 4),
    };
    const back = decodeCheckpoint(encodeCheckpoint(ck), 'bytes');
    expect(back).toEqual(ck);
    expect(() => decodeCheckpoint(new Uint8Array(5), 'five bytes')).toThrow(
      /^resume: five bytes is not a valid checkpoint \(it is not an nst checkpoint\)/,
    );
  });
});
