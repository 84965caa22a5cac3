import { describe, expect, it } from 'vitest';
import { countMemory, DEFAULT_LOSS, type MemoryShape } from '@nst/core';
import { checkMemory, hostMemoryAvailable } from '@nst/job';

// A backend's estimate is countMemory with its profile; this one is shaped like the cpu engine's.
const profile = { weightCopies: 2, imageCopies: 5, activationCopies: 2, largestMapCopies: 4, styleForwardCopies: 1 };
const backend = { name: 'cpu', estimateMemory: (s: MemoryShape) => 4 * countMemory(s, profile).total };
const shape = (width: number, height: number, style = { width, height }): MemoryShape => ({
  width,
  height,
  pooling: 'avg',
  batch: 1,
  loss: DEFAULT_LOSS,
  styleSizes: [style],
});

describe('memory check before a run', () => {
  it('passes a job that fits and refuses one that does not, in one line with the estimate, what is available and the largest size that fits', () => {
    const available = 3 * 2 ** 30;
    expect(() => checkMemory(backend, shape(400, 300), available)).not.toThrow();
    let message = '';
    try {
      checkMemory(backend, shape(16384, 16384), available);
    } catch (e) {
      message = (e as Error).message;
    }
    const m =
      /^size: 16384x16384 needs about ([\d.]+) TiB on the cpu backend but 3\.0 GiB of memory is available; the largest size that fits is about (\d+)x(\d+)$/.exec(
        message,
      );
    expect(m, message).not.toBeNull();
    const [w, h] = [Number(m![2]), Number(m![3])];
    expect(w).toBe(h);
    expect(backend.estimateMemory(shape(w, h))).toBeLessThanOrEqual(available);
    expect(backend.estimateMemory(shape(w + 2, h + 2))).toBeGreaterThan(available);
  });

  it('counts the style images at their own size (--style-scale)', () => {
    const available = 8 * 2 ** 30;
    expect(() => checkMemory(backend, shape(400, 300), available)).not.toThrow();
    expect(() => checkMemory(backend, shape(400, 300, { width: 16000, height: 12000 }), available)).toThrow(
      /^size: 400x300 with style images up to 16000x12000 needs about .* the largest size that fits is about \d+x\d+$/,
    );
  });

  it("checks a device backend against the device's free memory, not the host's", () => {
    const device = { ...backend, name: 'cuda', deviceMemoryAvailable: () => 2 ** 30 };
    expect(() => checkMemory(device, shape(64, 64))).not.toThrow();
    expect(() => checkMemory(device, shape(4096, 4096))).toThrow(
      /^size: 4096x4096 needs about .* on the cuda backend but 1\.0 GiB of memory is available/,
    );
  });

  it('refuses a shape the engine cannot take at any memory', () => {
    expect(() => checkMemory({ name: 'cuda', estimateMemory: () => Infinity }, shape(64, 64), 2 ** 40)).toThrow(
      /^size: 64x64 is beyond what the engine can describe at any memory on the cuda backend/,
    );
  });

  it('sees some host memory', () => {
    expect(hostMemoryAvailable()).toBeGreaterThan(0);
  });
});
