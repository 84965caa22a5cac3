/**
 * The cpu engine's bf16 precision: what `auto` chooses for the processor
 * features detected (forced here with NST_CPU_FEATURES, so that every machine
 * tests every case), the one-line refusal of bf16 without native bf16, and
 * parity with the float64 reference under bf16 tolerances of its own.
 *
 * The tolerances come from bench/cpu/bf16-tolerances.ts (four random weight
 * sets and images on these cases; bench/RESULTS.md, "bf16", has its output):
 * worst seen, then the limit here, about 2-3x above it.
 *   losses (content, style, total)     8.1e-3  -> 2e-2
 *   TV loss (of the float32 image)     2.8e-9  -> 1e-5 (the fp32 tolerance)
 *   gradient, average pooling          3.0e-2  -> 6e-2
 *   gradient, max pooling              1.3e-1  -> 0.25 (a rounding moves a window's maximum: the gradient takes another pixel)
 *   20 Adam steps: loss at 20          3.9e-3  -> 1e-2; image rel. L2 3.1e-2 -> 6e-2
 * (fp32 holds 1e-5 / 1e-4 on the same cases: cpu-parity.test.ts.) A bf16
 * convolution rounds its inputs and output to 8 significant bits (relative
 * 2^-9, 2e-3 per layer: bench/cpu/bf16-layers.cc measures 1.7-2.1e-3 against
 * fp32 on every VGG-19 layer); thirteen layers forward and back add up to the
 * percent-level gradient error above. What it does to a render:
 * docs/bf16/README.md.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LossValues } from '@nst/core';
import { createNativeBackend, isNativeEngineError } from '@nst/native';
import { referenceLossAndGradient } from '../../../test/reference/vgg-float64.js';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { adamCase, PARITY_SIZE, parityCases, runAdamCase, testPicture } from '../../../test/reference/parity-cases.js';
import { maskedCases } from '../../../test/reference/masked-cases.js';
import { addon, relDiff, relL2, skipReason } from './helpers.js';

const LOSS_TOL = 2e-2;
const TV_TOL = 1e-5;
const GRAD_TOL = { avg: 6e-2, max: 0.25 };
const ADAM_LOSS_TOL = 1e-2;
const ADAM_IMAGE_TOL = 6e-2;

const FEATURES = 'NST_CPU_FEATURES';
const initialFeatures = process.env[FEATURES];
function forceFeatures(value: string | undefined): void {
  if (value === undefined) delete process.env[FEATURES];
  else process.env[FEATURES] = value;
}

function describeCpu(precision: string): string {
  const engine = addon!.createEngine('cpu', { precision: precision as 'bf16' });
  try {
    return engine.describe();
  } finally {
    engine.dispose();
  }
}

function refusal(precision: string): unknown {
  try {
    addon!.createEngine('cpu', { precision: precision as 'bf16' }).dispose();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** What oneDNN 2.6 says on a processor where it has no bf16 convolution at all (below AVX-512), when bf16 is forced there. */
const NO_BF16_KERNELS = /^cpu: bf16: oneDNN \S+ has no bf16 convolution for this processor/;

/** Whether a bf16 engine can run here at all: natively, or with its features forced (AVX-512 emulates bf16). */
function bf16Runs(): boolean {
  forceFeatures('avx512_bf16');
  try {
    return refusal('bf16') === undefined;
  } finally {
    forceFeatures(initialFeatures);
  }
}

/** Whether this processor runs bf16 natively, as the engine detects it (nothing forced). */
function nativeBf16(): boolean {
  forceFeatures(undefined);
  try {
    return refusal('bf16') === undefined;
  } finally {
    forceFeatures(initialFeatures);
  }
}

describe.skipIf(!addon)(`cpu bf16: auto and the processor's features${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  afterEach(() => forceFeatures(initialFeatures));

  it('auto is fp32 whatever the processor has (the quality proof fails on full VGG-19); bf16 runs where asked for and native', () => {
    const runs = bf16Runs();
    for (const features of ['none', 'avx512_bf16', 'amx'] as const) {
      forceFeatures(features);
      expect(describeCpu('auto')).toMatch(new RegExp(` fp32; NST_CPU_FEATURES=${features}\\)$`));
      expect(describeCpu('fp32')).toMatch(new RegExp(` fp32; NST_CPU_FEATURES=${features}\\)$`));
      if (features === 'none') continue; // refused: the next test
      if (runs) expect(describeCpu('bf16')).toMatch(new RegExp(` bf16; NST_CPU_FEATURES=${features}\\)$`));
      else {
        // Below AVX-512 oneDNN has no bf16 kernel at all: bf16 is refused, saying why.
        const e = refusal('bf16');
        expect(isNativeEngineError(e) && [e.field, NO_BF16_KERNELS.test(e.message)]).toEqual(['precision', true]);
      }
    }
    // Nothing forced: auto is fp32, and bf16 follows the detection; each says what runs (the instruction set, the precision).
    forceFeatures(undefined);
    expect(describeCpu('auto')).toMatch(/^cpu \(oneDNN 2\.\d+\.\d+, \d+ threads, [\w.-]+ fp32\)$/);
    if (nativeBf16()) expect(describeCpu('bf16')).toMatch(/^cpu \(oneDNN 2\.\d+\.\d+, \d+ threads, (AMX|AVX512-BF16) bf16\)$/);
    // No precision asked: fp32, as before bf16 existed.
    const engine = addon!.createEngine('cpu');
    expect(engine.describe()).toMatch(/ fp32\)$/);
    engine.dispose();
  });

  it('an explicit bf16 without native bf16 is refused in one line naming the missing instructions', async () => {
    forceFeatures('none');
    const e = refusal('bf16');
    expect(isNativeEngineError(e) && [e.code, e.field]).toEqual(['unsupported', 'precision']);
    const message = (e as Error).message;
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toMatch(
      /^cpu: bf16 needs native bf16 instructions, AMX-BF16 \(amx_bf16\) or AVX512-BF16 \(avx512_bf16\), which this processor lacks/,
    );
    await expect(createNativeBackend('cpu', { precision: 'bf16' })).rejects.toMatchObject({
      name: 'UserError',
      code: 'unsupported',
      field: 'precision',
    });
    // Forced features say only what the processor has: bf16 then runs on oneDNN's kernels for what is really
    // there (emulated bf16 on AVX-512), or is refused in one line where oneDNN has none.
    forceFeatures('avx512_bf16');
    const forced = refusal('bf16');
    if (forced !== undefined) expect((forced as Error).message).toMatch(NO_BF16_KERNELS);
    forceFeatures('sse');
    const bad = refusal('auto');
    expect(isNativeEngineError(bad) && bad.message).toBe("cpu: NST_CPU_FEATURES must be none, avx512_bf16 or amx, got 'sse'");
  });
});

const _image = testPicture;

/** The TV term of the same (float32) image is float32-exact: `tvTol` TV_TOL; after steps, the images differ and so does TV. */
function expectLossesClose(got: readonly LossValues[], want: readonly LossValues[], tol: number, tvTol = TV_TOL) {
  expect(got.length).toBe(want.length);
  got.forEach((g, b) => {
    for (const key of ['content', 'style', 'tv', 'total'] as const) {
      const d = relDiff(g[key], want[b][key]);
      const limit = key === 'tv' ? tvTol : tol;
      if (!(d <= limit))
        throw new Error(`item ${b} ${key}: bf16 ${g[key]} vs ${want[b][key]} (relative ${d.toExponential(2)}, limit ${limit})`);
    }
  });
}

const { height: h, width: w } = PARITY_SIZE;
// The parity tests' cases, on images of their own.
const cases = parityCases(500);

const noBf16 = !addon ? skipReason : bf16Runs() ? '' : 'oneDNN has no bf16 convolution on this processor (below AVX-512), even emulated';
describe.skipIf(noBf16 !== '')(`cpu bf16 vs the float64 reference${noBf16 ? ` (skipped: ${noBf16})` : ''}`, () => {
  const weights = testWeights(5, 13);
  // Without native bf16, the features are forced: oneDNN runs its emulated (or reference) bf16 kernels, with the same roundings.
  const bf16Backend = async () => {
    if (addon && !nativeBf16()) forceFeatures('avx512_bf16');
    try {
      return await createNativeBackend('cpu', { precision: 'bf16' });
    } finally {
      forceFeatures(initialFeatures);
    }
  };

  for (const c of cases) {
    it(`loss and gradient: ${c.name}`, async () => {
      const backend = await bf16Backend();
      expect(backend.detail).toMatch(/ bf16[;)]/);
      await backend.loadWeights(weights);
      const images = testImage(35, c.options.batch * h * w * 3);
      const session = await backend.createSession(c.options);
      await session.setTargets(c.targets);
      await session.setImages(images);
      const got = await session.lossAndGradient();
      backend.dispose();
      const want = referenceLossAndGradient(weights, c.options, c.targets, images);
      expectLossesClose(got.losses, want.losses, LOSS_TOL);
      const d = relL2(got.gradient, want.gradient);
      console.log(`bf16 ${c.options.pooling} pooling: gradient rel. L2 ${d.toExponential(2)} (limit ${GRAD_TOL[c.options.pooling]})`);
      expect(d).toBeLessThan(GRAD_TOL[c.options.pooling]);
    });
  }

  it('20 Adam iterations follow the float64 trajectory within the bf16 tolerances, and the loss falls as far', async () => {
    const backend = await bf16Backend();
    await backend.loadWeights(weights);
    const { first, images, after, ref } = await runAdamCase(backend, weights, adamCase(46));
    backend.dispose();
    expectLossesClose(first, ref.first, LOSS_TOL);
    expectLossesClose(after, ref.final, ADAM_LOSS_TOL, ADAM_LOSS_TOL);
    expect(relL2(images, ref.images)).toBeLessThan(ADAM_IMAGE_TOL);
    const fell = after[0].total / first[0].total;
    const refFell = ref.final[0].total / ref.first[0].total;
    expect(Math.abs(fell - refFell) / refFell).toBeLessThan(ADAM_LOSS_TOL);
  });

  it('refuses style masks in one coded line (unsupported, styleMask): bf16 has no guided Grams yet', async () => {
    const backend = await bf16Backend();
    await backend.loadWeights(weights);
    const c = maskedCases()[1];
    const session = await backend.createSession(c.options);
    await expect(session.setTargets(c.targets)).rejects.toMatchObject({ code: 'unsupported', field: 'styleMask' });
    backend.dispose();
  });
});
