import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { type Backend, type SessionOptions, type WeightSet } from '@nst/core';
import { batchCapacity, packGroups } from '@nst/batch';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { jobFromOptions, prepareJob, readCheckpoint, runJobGroup, type JobConfig, type PreparedJob } from '@nst/job';
import { loadWeights } from '@nst/weights';

describe('packing', () => {
  it("sizes a batch with the backend's own memory estimate, between 1 and maxBatch", () => {
    const job = jobFromOptions({ content: 'c.png', style: 's.png', out: 'o.png', contentLayers: 'conv1_2', styleLayers: 'conv1_1' });
    const size = { width: 8, height: 6 };
    const prepared = { job, size, steps: [{ size, iterations: 1, styleSizes: [{ width: 5, height: 4 }] }] } as unknown as PreparedJob;
    // A backend whose estimate is 100 bytes of weights plus 1000 per item: 3 items fit 3100 bytes, 4 do not.
    const asked: number[] = [];
    const backend = {
      estimateMemory: (shape: { batch: number; width: number; height: number; styleSizes: readonly unknown[] }) => {
        asked.push(shape.batch);
        expect([shape.width, shape.height]).toEqual([8, 6]);
        expect(shape.styleSizes).toEqual([{ width: 5, height: 4 }]);
        return 100 + 1000 * shape.batch;
      },
    };
    expect(batchCapacity(backend, prepared, { maxBatch: 100, memoryBytes: 3100 })).toBe(3);
    expect(asked).toEqual([2, 3, 4]);
    expect(batchCapacity(backend, prepared, { maxBatch: 2, memoryBytes: 1e12 })).toBe(2);
    // A job larger than the budget still runs, alone.
    expect(batchCapacity(backend, prepared, { maxBatch: 8, memoryBytes: 10 })).toBe(1);
  });

  it('groups by key, keeps the order, and splits groups at the capacity', () => {
    const items = ['a1', 'b1', 'a2', 'a3', 'b2', 'a4', 'a5'];
    expect(
      packGroups(
        items,
        (s) => s[0],
        () => 2,
      ),
    ).toEqual([['a1', 'a2'], ['a3', 'a4'], ['a5'], ['b1', 'b2']]);
  });
});

const native = loadNativeAddon();
// Under CI a missing engine fails (createNativeBackend throws); elsewhere these tests skip.
const run = native.ok || process.env.CI === 'true';

describe.skipIf(!run)('a packed batch (cpu engine)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-pack-'));
  let weights: WeightSet;
  let backend: Backend;
  const image = async (name: string, seed: number) => {
    const file = path.join(dir, name);
    const data = Buffer.alloc(24 * 16 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * (seed + 3) * 7919 + seed * 31) % 251;
    await sharp(data, { raw: { width: 24, height: 16, channels: 3 } })
      .png()
      .toFile(file);
    return file;
  };
  const job = (content: string, styles: string[], out: string, extra: Record<string, string | boolean> = {}): JobConfig =>
    jobFromOptions({
      content,
      style: styles,
      out: path.join(dir, out),
      size: '24x16',
      iterations: '8',
      styleLayers: 'conv1_1,conv2_1',
      contentLayers: 'conv2_2',
      saveEvery: '0',
      printEvery: '4',
      ...extra,
    });
  const pixels = (file: string) => sharp(file).raw().toBuffer();
  const maxDiff = (a: Buffer, b: Buffer) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

  it('renders each item with its own styles, as if it ran alone, and resumes an item alone', async () => {
    weights = await loadWeights('random:7');
    backend = await createNativeBackend('cpu', {});
    await backend.loadWeights(weights);
    const [c1, c2, s1, s2, s3] = await Promise.all([
      image('c1.png', 1),
      image('c2.png', 2),
      image('s1.png', 3),
      image('s2.png', 4),
      image('s3.png', 5),
    ]);
    const engine = { backend, weights };
    const alone = [job(c1, [s1], 'alone1.png'), job(c2, [s2, s3], 'alone2.png', { styleBlendWeights: '1,3' })];
    for (const c of alone) await runJobGroup(engine, [await prepareJob(c, weights)]);

    // The same two jobs in one engine batch; stopped after 4 iterations (each item checkpoints on its own), then resumed.
    const packed = [job(c1, [s1], 'packed1.png'), job(c2, [s2, s3], 'packed2.png', { styleBlendWeights: '1,3' })];
    const group = await Promise.all(packed.map((c) => prepareJob(c, weights)));
    expect(group[1].key).toBe(group[0].key);
    let batchSize = 0;
    const stop = new AbortController();
    const first = await runJobGroup(
      {
        // The same backend, counting the batch size it is asked for.
        backend: Object.create(backend, {
          createSession: { value: (o: SessionOptions) => ((batchSize = o.batch), backend.createSession(o)) },
        }) as Backend,
        weights,
      },
      group,
      { onProgress: (i) => i >= 4 && stop.abort() },
      stop.signal,
    );
    expect(batchSize).toBe(2);
    expect(first.interrupted).toBe(true);
    for (const c of packed) expect((await readCheckpoint(`${c.out}.ckpt`))?.iteration).toBe(first.iterations);

    // Item 2 resumes alone (another batch, another batch size); item 1 resumes in a batch of its own too.
    for (const c of packed) {
      const r = await runJobGroup(engine, [await prepareJob({ ...c, resume: true }, weights)]);
      expect(r.startIteration).toBe(first.iterations);
      expect(existsSync(`${c.out}.ckpt`)).toBe(false);
    }
    const [a1, a2, p1, p2] = await Promise.all(
      ['alone1.png', 'alone2.png', 'packed1.png', 'packed2.png'].map((f) => pixels(path.join(dir, f))),
    );
    expect(maxDiff(p1, a1)).toBeLessThanOrEqual(1);
    expect(maxDiff(p2, a2)).toBeLessThanOrEqual(1);
    // The comparison can fail: the two jobs' images differ.
    expect(maxDiff(a1, a2)).toBeGreaterThan(20);
    backend.dispose();
  });
});
