import { describe, expect, it } from 'vitest';
import { PREPROCESSING, type WeightSet } from '@nst/core';
import { jobFromOptions, withWeightDefaults } from '@nst/job';

// withWeightDefaults reads only defaultLayers: a set with no layers will do.
const plain: WeightSet = { layers: [], preprocessing: PREPROCESSING.caffeBgr, source: 'test', format: 'test' };

const base = { content: 'c.png', style: 's.png', out: 'o.png' };
const partial = {
  ...plain,
  defaultLayers: {
    contentLayers: [{ layer: 'conv3_2', weight: 1 }],
    styleLayers: [
      { layer: 'conv1_1', weight: 0.5 },
      { layer: 'conv2_1', weight: 0.5 },
    ],
  },
};

describe("a weight set's own loss layers", () => {
  it('fill the layer options the user left out, and only those', () => {
    const both = withWeightDefaults(base, partial);
    expect(both.filled).toEqual(['contentLayers', 'styleLayers']);
    const job = jobFromOptions(both.values);
    expect(job.contentLayers).toEqual([{ layer: 'conv3_2', weight: 1 }]);
    expect(job.styleLayers).toEqual([
      { layer: 'conv1_1', weight: 0.5 },
      { layer: 'conv2_1', weight: 0.5 },
    ]);

    const named = withWeightDefaults({ ...base, contentLayers: 'conv2_2:1' }, partial);
    expect(named.filled).toEqual(['styleLayers']);
    expect(jobFromOptions(named.values).contentLayers).toEqual([{ layer: 'conv2_2', weight: 1 }]);
  });

  it('leave a set without them to the notebook defaults', () => {
    const none = withWeightDefaults(base, plain);
    expect(none.filled).toEqual([]);
    expect(none.values).toBe(base);
  });
});
