import { describe, expect, it } from 'vitest';
import {
  checkLayersAvailable,
  DEFAULT_LOSS,
  forwardFlops,
  layerInputSize,
  formatLayers,
  deepestLayerIndex,
  findLayer,
  VGG19_LAYERS,
} from '@nst/core';

describe('loss configuration', () => {
  it('has the notebook defaults', () => {
    expect(DEFAULT_LOSS.alpha).toBe(10);
    expect(DEFAULT_LOSS.beta).toBe(40);
    expect(DEFAULT_LOSS.contentLayers).toEqual([{ layer: 'conv4_2', weight: 1 }]);
    expect(formatLayers(DEFAULT_LOSS.styleLayers).split(',')).toEqual([
      'conv1_1:0.2',
      'conv2_1:0.2',
      'conv3_1:0.2',
      'conv4_1:0.2',
      'conv5_1:0.2',
    ]);
    expect(VGG19_LAYERS[deepestLayerIndex(DEFAULT_LOSS)].name).toBe('conv5_1');
  });

  it('names the field, the missing layer and what a partial weight set holds', () => {
    const eight = VGG19_LAYERS.slice(0, 8).map((l) => l.name);
    const loss = { ...DEFAULT_LOSS, contentLayers: [{ layer: 'conv3_2', weight: 1 }] };
    expect(() => checkLayersAvailable(loss, eight, 'w')).toThrow(
      expect.objectContaining({
        field: 'styleLayers',
        code: 'not-found',
        detail: 'layer conv4_1 is not in the weight set w (it has conv1_1 .. conv3_4)',
      }),
    );
    expect(() => checkLayersAvailable(DEFAULT_LOSS, eight, 'w')).toThrow(expect.objectContaining({ field: 'contentLayers' }));
    expect(findLayer('pool1')).toBeUndefined();
    expect(() =>
      checkLayersAvailable(
        DEFAULT_LOSS,
        VGG19_LAYERS.slice(0, 13).map((l) => l.name),
        'w',
      ),
    ).not.toThrow();
  });
});

describe('VGG-19 shapes', () => {
  it('has 16 convolutions with the published channel counts', () => {
    expect(VGG19_LAYERS.map((l) => l.outChannels)).toEqual([64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]);
    // parameters conv1_1..conv5_1: 12.94 M (the spec)
    const params = VGG19_LAYERS.slice(0, 13).reduce((s, l) => s + 9 * l.inChannels * l.outChannels + l.outChannels, 0);
    expect(params / 1e6).toBeCloseTo(12.94, 2);
  });

  it('pools with SAME padding: 300x400 -> 38x50 at block 4', () => {
    expect(layerInputSize(findLayer('conv4_1')!.index, 300, 400)).toEqual({ height: 38, width: 50 });
    expect(layerInputSize(findLayer('conv5_1')!.index, 300, 400)).toEqual({ height: 19, width: 25 });
  });

  it("counts the spec's forward FLOPs up to conv5_1", () => {
    // ../shared/NST-SPEC.md: 87.1, 189.3 and 757 GFLOP
    expect(forwardFlops(12, 300, 400) / 1e9).toBeCloseTo(87.1, 1);
    expect(forwardFlops(12, 512, 512) / 1e9).toBeCloseTo(189.3, 1);
    expect(Math.round(forwardFlops(12, 1024, 1024) / 1e9)).toBe(757);
  });
});
