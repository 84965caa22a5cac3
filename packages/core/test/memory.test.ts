import { describe, expect, it } from 'vitest';
import { countMemory, DEFAULT_LOSS, formatBytes, largestFittingSize, networkFloats, weightFloats, type MemoryShape } from '@nst/core';

// Counted by hand from the VGG-19 table (3x3 convs keep the size, 2x2 SAME pooling halves it rounding up).
describe('memory arithmetic', () => {
  it('counts the feature maps of conv1_1..conv2_1 at 4x6 and 5x7', () => {
    // conv1_1 4*6*64 = 1536, conv1_2 1536, pooled 2*3*64 = 384, conv2_1 2*3*128 = 768
    expect(networkFloats(2, 4, 6)).toEqual({ activations: 1536 + 1536 + 384 + 768, largestMap: 1536 });
    // 5x7: 2240 + 2240, pooled 3*4*64 = 768, conv2_1 3*4*128 = 1536
    expect(networkFloats(2, 5, 7)).toEqual({ activations: 2240 + 2240 + 768 + 1536, largestMap: 2240 });
    // No pooled map after the last layer run.
    expect(networkFloats(1, 4, 6)).toEqual({ activations: 1536 + 1536, largestMap: 1536 });
  });

  it('counts the weights of conv1_1..conv2_1', () => {
    expect(weightFloats(2)).toBe(9 * 3 * 64 + 64 + (9 * 64 * 64 + 64) + (9 * 64 * 128 + 128));
  });

  it('adds up a session: weights, images, targets, the optimising network and the style pass', () => {
    const shape: MemoryShape = {
      height: 4,
      width: 6,
      pooling: 'avg',
      batch: 2,
      loss: {
        ...DEFAULT_LOSS,
        contentLayers: [{ layer: 'conv2_1', weight: 1 }],
        styleLayers: [
          { layer: 'conv1_1', weight: 1 },
          { layer: 'conv1_2', weight: 1 },
        ],
      },
      styleSizes: [
        { height: 8, width: 10 },
        { height: 2, width: 2 },
      ],
    };
    const one = { weightCopies: 1, imageCopies: 1, activationCopies: 1, largestMapCopies: 1, styleForwardCopies: 1 };
    const c = countMemory(shape, one);
    expect(c.weights).toBe(112576);
    expect(c.images).toBe(2 * 4 * 6 * 3);
    expect(c.contentTargets).toBe(2 * 768);
    expect(c.styleTargets).toBe(3 * (64 * 64 + 64 * 64)); // a Gram per layer per image, plus one gradient Gram per layer
    expect(c.optimising).toBe(2 * (4224 + 1536));
    expect(c.styleForward).toBe(8 * 10 * 64 * 2); // the larger style image, up to conv1_2
    expect(c.total).toBe(112576 + 144 + 1536 + 24576 + 11520 + 10240);
    const twice = countMemory(shape, { ...one, activationCopies: 2, weightCopies: 3 });
    expect(twice.total - c.total).toBe(2 * 4224 + 2 * 112576);
  });

  it('finds the largest size that fits, keeping the aspect ratio', () => {
    const shape: MemoryShape = {
      height: 3000,
      width: 4000,
      batch: 1,
      pooling: 'avg',
      loss: DEFAULT_LOSS,
      styleSizes: [{ height: 3000, width: 4000 }],
    };
    const profile = { weightCopies: 1, imageCopies: 5, activationCopies: 2, largestMapCopies: 2, styleForwardCopies: 1 };
    const bytes = (s: MemoryShape) => 4 * countMemory(s, profile).total;
    const available = 2 * 2 ** 30;
    const fit = largestFittingSize(shape, bytes, available)!;
    expect(bytes({ ...shape, ...fit, styleSizes: [fit] })).toBeLessThanOrEqual(available);
    const bigger = { height: fit.height + 3, width: fit.width + 4 };
    expect(bytes({ ...shape, ...bigger, styleSizes: [bigger] })).toBeGreaterThan(available);
    expect(Math.abs(fit.width / fit.height - 4 / 3)).toBeLessThan(0.01);
    expect(largestFittingSize(shape, bytes, 1000)).toBeUndefined(); // the weights alone do not fit
  });

  it('formats bytes', () => {
    expect(formatBytes(512)).toBe('512 bytes');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(6 * 2 ** 30)).toBe('6.0 GiB');
  });
});
