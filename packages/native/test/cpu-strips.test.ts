/**
 * The cpu engine's striped Winograd convolutions (native/src/cpu/conv_strips.h):
 * a Winograd layer whose scratchpad is large runs over strips of rows, with
 * halos, one at a time. At 256x320 conv2_1's and conv2_2's maps (128 rows)
 * run in two strips each; the same session with strips turned
 * off (NST_CPU_STRIPS=0: each map at once, the path the parity tests hold to
 * the float64 reference) must give the same loss and gradient: the forward
 * places Winograd's tiles where the whole map does, the backward adds the
 * strips' halo rows in another order. Also: the plan counts the strips
 * (less memory than the whole maps' scratchpads).
 */
import { describe, expect, it } from 'vitest';
import type { NativeSessionConfig } from '@nst/native';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { BLOCKS_1_2_LOSS, addon, relDiff, relL2, skipReason } from './helpers.js';

const height = 256;
const width = 320;
const config: NativeSessionConfig = {
  height,
  width,
  batch: 1,
  pooling: 'avg',
  loss: BLOCKS_1_2_LOSS,
};
const pixels = height * width * 3;
const targets = [
  {
    content: { height, width, data: testImage(1, pixels) },
    styles: [{ image: { height, width, data: testImage(2, pixels) }, weight: 1 }],
  },
];

/** Runs `f` with NST_CPU_STRIPS set to `value` (read when a net is planned). */
function withStrips<T>(value: string | undefined, f: () => T): T {
  const saved = process.env.NST_CPU_STRIPS;
  if (value === undefined) delete process.env.NST_CPU_STRIPS;
  else process.env.NST_CPU_STRIPS = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.NST_CPU_STRIPS;
    else process.env.NST_CPU_STRIPS = saved;
  }
}

describe.skipIf(!addon)(`cpu engine: Winograd in strips${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('gives the loss and gradient of the whole maps at once, in less memory', async () => {
    const engine = addon!.createEngine('cpu');
    engine.setWeights(testWeights(7, 4).layers);
    const shape = { ...config, styleSizes: [{ height, width }] };
    const planned = {
      strips: withStrips(undefined, () => engine.estimateMemory(shape)),
      whole: withStrips('0', () => engine.estimateMemory(shape)),
    };
    const run = async (strips: string | undefined) => {
      const session = withStrips(strips, () => engine.createSession(config));
      await withStrips(strips, () => session.setTargets(targets));
      session.setImages(testImage(3, pixels));
      const result = await session.lossAndGradient();
      session.dispose();
      return result;
    };
    const whole = await run('0');
    const strips = await run(undefined);
    engine.dispose();
    console.log(
      `${width}x${height}: loss ${relDiff(strips.losses[0]!.total, whole.losses[0]!.total).toExponential(2)} apart, gradient ${relL2(strips.gradient, whole.gradient).toExponential(2)}; plan ${(planned.strips / 2 ** 20).toFixed(0)} MiB in strips, ${(planned.whole / 2 ** 20).toFixed(0)} MiB whole`,
    );
    expect(relDiff(strips.losses[0]!.total, whole.losses[0]!.total)).toBeLessThan(1e-6);
    expect(relL2(strips.gradient, whole.gradient)).toBeLessThan(1e-5);
    // The plan differs only where strips were planned (their scratchpad is the smaller).
    expect(planned.strips).toBeLessThan(planned.whole);
  });
});
