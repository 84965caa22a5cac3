import { describe, expect, it } from 'vitest';
import { jobFromOptions, lossOf, QUALITY_PRESETS } from '@nst/job';
import { testImage } from '../../../test/reference/random-weights.js';

const base = { content: 'c.jpg', style: 's.jpg', out: 'o.png' };

describe('quality presets', () => {
  it('notebook is the spec (the default)', () => {
    expect(jobFromOptions({ ...base, preset: 'notebook' })).toEqual(jobFromOptions(base));
    expect(jobFromOptions(base).optimizer).toBe('adam');
  });

  it('fill only the options not given: explicit options win', () => {
    const jc = jobFromOptions({ ...base, preset: 'jcjohnson' });
    expect(jc.optimizer).toBe('lbfgs');
    expect(jc.iterations).toBe(1000);
    expect(jc.lbfgsHistory).toBe(100);
    expect(jc.pooling).toBe('max');
    const mine = jobFromOptions({ ...base, preset: 'jcjohnson', iterations: '10', optimizer: 'adam', styleLayers: 'conv1_1' });
    expect(mine.iterations).toBe(10);
    expect(mine.optimizer).toBe('adam');
    expect(mine.styleLayers).toEqual([{ layer: 'conv1_1', weight: 1 }]);
    expect(mine.alpha).toBe(5); // not given: from the preset
    const hq = jobFromOptions({ ...base, preset: 'hq' });
    expect(hq.scales).toBe('auto');
    expect(hq.optimizer).toBe('lbfgs');
    expect(lossOf(hq)).toEqual(lossOf(jc)); // neural-style's balance (checked against its formulas below)
    expect(hq.pooling).toBe(jobFromOptions(base).pooling); // the spec's average pooling
    expect(() => jobFromOptions({ ...base, preset: 'best' })).toThrow(expect.objectContaining({ field: 'preset' }));
  });

  it("jcjohnson's weights give neural-style's losses (its formulas, written out here) in this project's normalisation", () => {
    const jc = jobFromOptions({ ...base, preset: 'jcjohnson' });
    const { alpha, beta, tvWeight } = jc;
    // A random activation pair of C channels at N positions.
    for (const [layer, C] of [
      ['conv1_1', 64],
      ['conv3_1', 256],
      ['conv5_1', 512],
    ] as const) {
      const N = 12;
      const a = testImage(1, C * N, -1, 1);
      const b = testImage(2, C * N, -1, 1);
      const gram = (x: Float32Array, norm: number) => {
        const g = new Float64Array(C * C);
        for (let i = 0; i < C; i++)
          for (let j = 0; j < C; j++) for (let n = 0; n < N; n++) g[i * C + j] += (x[i * N + n] * x[j * N + n]) / norm;
        return g;
      };
      // neural-style: style_weight 100 * mean over C^2 of (G_a - G_b)^2, G = A A' / (C N).
      const [ga, gb] = [gram(a, C * N), gram(b, C * N)];
      let theirs = 0;
      for (let k = 0; k < C * C; k++) theirs += (100 * (ga[k] - gb[k]) ** 2) / (C * C);
      // here: beta * w_l * sum (Ghat_a - Ghat_b)^2 / (4 C^2), Ghat = A A' / N.
      const [ha, hb] = [gram(a, N), gram(b, N)];
      let ours = 0;
      for (let k = 0; k < C * C; k++) ours += (ha[k] - hb[k]) ** 2 / (4 * C * C);
      const w = jc.styleLayers.find((l) => l.layer === layer)!.weight;
      expect(beta * w * ours).toBeCloseTo(theirs, 10);
    }
    // content: neural-style 5 * mean (a - b)^2 over C N; here alpha * w_c * sum / (4 C N).
    expect((alpha * jc.contentLayers[0].weight) / 4).toBe(5);
    expect(jc.contentLayers[0].layer).toBe('conv4_2');
    // tv: neural-style's gradient is that of (1e-3 / 2) * sum of squared differences.
    expect(tvWeight).toBe(1e-3 / 2);
  });

  it('every preset names only real options and has a description', () => {
    for (const [name, preset] of Object.entries(QUALITY_PRESETS)) {
      expect(preset.description.length, name).toBeGreaterThan(10);
      expect(() => jobFromOptions({ ...base, ...preset.values })).not.toThrow();
    }
  });
});
