/**
 * core's masks: the pooled masks against the float64 reference's own pooling
 * (test/reference/masked-float64.ts, independent of this code), and the
 * grouping of styles into regions.
 */
import { describe, expect, it } from 'vitest';
import { effectiveMask, layerInputSize, maskAtLayers, maskMass, styleRegions, VGG19_LAYERS } from '../src/index.js';
import { maskAtLayers as referenceMaskAtLayers } from '../../../test/reference/masked-float64.js';

function softMask(height: number, width: number): Float64Array {
  const m = new Float64Array(height * width);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) m[y * width + x] = Math.min(1, Math.max(0, (x - y / 3) / 17 + 0.3));
  return m;
}

describe('masks at each layer', () => {
  for (const [height, width] of [
    [37, 29],
    [64, 48],
    [17, 9],
  ])
    it(`${width}x${height}: the float64 reference's average pooling, at every layer's size`, () => {
      const mask = softMask(height, width);
      const layers = VGG19_LAYERS.map((l) => l.index);
      const ours = maskAtLayers(mask, height, width, layers);
      const reference = referenceMaskAtLayers(mask, height, width, layers.length - 1);
      for (const i of layers) {
        const size = layerInputSize(i, height, width);
        const m = ours.get(i)!;
        expect(m.length).toBe(size.height * size.width);
        expect(reference[i].length).toBe(m.length);
        for (let p = 0; p < m.length; p++) expect(m[p]).toBe(Math.fround(reference[i][p]));
      }
    });

  it('a 3x3 mask pools over the valid cells of TF SAME windows', () => {
    const m = maskAtLayers([1, 0, 0.5, 0, 0, 1, 1, 1, 0], 3, 3, [2]).get(2)!;
    // windows: rows 0-1 x cols 0-1, rows 0-1 x col 2, row 2 x cols 0-1, row 2 x col 2
    expect(Array.from(m)).toEqual([0.25, 0.75, 1, 0]);
  });

  it('returns only the layers asked for, and refuses a mask of the wrong size', () => {
    expect([...maskAtLayers(new Float32Array(16), 4, 4, [0, 4]).keys()]).toEqual([0, 4]);
    expect(() => maskAtLayers(new Float32Array(15), 4, 4, [0])).toThrow(/4x4 mask needs 16/);
    expect(maskMass([0.5, 0.25, 1])).toBe(1.75);
  });
});

describe('style regions', () => {
  const a = Float32Array.of(1, 0, 0.5, 1);
  const b = Float32Array.of(0, 1, 0.5, 0);
  const white = Float32Array.of(1, 1, 1, 1);

  it('white and absent masks are no mask: one region, the weights as given', () => {
    expect(effectiveMask(white)).toBeUndefined();
    const regions = styleRegions([
      { image: 'x', weight: 0.3, mask: white },
      { image: 'y', weight: 0.7 },
    ]);
    expect(regions).toEqual([
      {
        styles: [
          { image: 'x', weight: 0.3 },
          { image: 'y', weight: 0.7 },
        ],
      },
    ]);
  });

  it("styles sharing a mask form one region, its weights renormalised; regions keep their first style's order", () => {
    const regions = styleRegions([
      { image: 'x', weight: 0.2, mask: a },
      { image: 'y', weight: 0.5, mask: b, region: a },
      { image: 'z', weight: 0.3, mask: Float32Array.from(a) },
    ]);
    expect(regions.length).toBe(2);
    expect(regions[0].mask).toBe(a);
    expect(regions[0].styles.map((s) => s.image)).toEqual(['x', 'z']);
    expect(regions[0].styles[0].weight).toBeCloseTo(0.4, 15);
    expect(regions[0].styles[1].weight).toBeCloseTo(0.6, 15);
    expect(regions[1]).toEqual({ mask: b, styles: [{ image: 'y', weight: 1, region: a }] });
  });

  it('a white style region is dropped (the whole painting)', () => {
    expect(styleRegions([{ image: 'x', weight: 1, region: white }])).toEqual([{ styles: [{ image: 'x', weight: 1 }] }]);
  });
});
