/**
 * The cases on which the engines' parity tests hold them to the float64
 * reference (packages/native/test/cpu-parity.test.ts in fp32,
 * cpu-bf16.test.ts in bf16, and bench/cpu/bf16-tolerances.ts, which
 * measured bf16's tolerances on them): an odd size with the default loss,
 * TV, a batch of 2 and a two-style blend under avg pooling; and max
 * pooling with content at conv5_1 and style at conv1_1 and conv3_2. `seed`
 * shifts every image's seed, so that a test or bench run can draw other
 * images on the same cases.
 */
import {
  adamStepSizes,
  DEFAULT_ADAM,
  DEFAULT_LOSS,
  type Backend,
  type LossSpec,
  type LossValues,
  type SessionOptions,
  type Targets,
  type WeightSet,
} from '@nst/core';
import { referenceAdamTrajectory } from './vgg-float64.js';
import { testImage } from './random-weights.js';

export interface ParityCase {
  readonly name: string;
  readonly options: SessionOptions;
  readonly targets: Targets[];
}

/** What fp32 engines are held to against the float64 reference: relative loss, relative L2 of the gradient. */
export const PARITY_TOLERANCE: { readonly loss: number; readonly gradient: number } = { loss: 1e-5, gradient: 1e-4 };

/** The cases' output size: odd on both sides. */
export const PARITY_SIZE = { height: 19, width: 23 } as const;

/** A seeded test image of height x width x 3, as the seam takes it. */
export const testPicture = (seed: number, height: number, width: number) => ({ height, width, data: testImage(seed, height * width * 3) });

/** The second case's loss: content at conv5_1, style at conv1_1 and conv3_2. */
export const MAX_POOLING_LOSS: LossSpec = {
  contentLayers: [{ layer: 'conv5_1', weight: 1 }],
  styleLayers: [
    { layer: 'conv1_1', weight: 0.5 },
    { layer: 'conv3_2', weight: 0.5 },
  ],
  alpha: 10,
  beta: 40,
  tvWeight: 0,
};

export function parityCases(seed = 0): ParityCase[] {
  const { height: h, width: w } = PARITY_SIZE;
  const image = (k: number, height: number, width: number) => testPicture(seed + k, height, width);
  return [
    {
      name: 'avg pooling, default loss + TV, batch 2 with a two-style blend',
      options: { height: h, width: w, batch: 2, pooling: 'avg', loss: { ...DEFAULT_LOSS, tvWeight: 2e-4 } },
      targets: [
        { content: image(11, h, w), styles: [{ image: image(12, 17, 20), weight: 1 }] },
        {
          content: image(13, h, w),
          styles: [
            { image: image(14, 13, 15), weight: 0.3 },
            { image: image(15, h, w), weight: 0.7 },
          ],
        },
      ],
    },
    {
      name: 'max pooling, content at conv5_1, style at conv1_1 and conv3_2',
      options: { height: h, width: w, batch: 1, pooling: 'max', loss: MAX_POOLING_LOSS },
      targets: [{ content: image(21, h, w), styles: [{ image: image(22, 16, 21), weight: 1 }] }],
    },
  ];
}

/** 20 Adam steps from one start at 12x14, the default loss with TV: the trajectory a backend must follow (images seeded from `seed`). */
export function adamCase(seed: number) {
  const options: SessionOptions = { height: 12, width: 14, batch: 1, pooling: 'avg', loss: { ...DEFAULT_LOSS, tvWeight: 1e-4 } };
  const targets: Targets[] = [{ content: testPicture(seed, 12, 14), styles: [{ image: testPicture(seed + 1, 12, 14), weight: 1 }] }];
  return { options, targets, start: testImage(seed + 2, 12 * 14 * 3), steps: adamStepSizes(DEFAULT_ADAM, 1, 20) };
}

/**
 * An Adam case run on `backend` (its weights loaded) and by the float64
 * reference: each one's loss at the start (`first`), images after the steps
 * and their loss (`after`, `final`).
 */
export async function runAdamCase(
  backend: Backend,
  weights: WeightSet,
  c: ReturnType<typeof adamCase>,
): Promise<{ first: LossValues[]; images: Float32Array; after: LossValues[]; ref: ReturnType<typeof referenceAdamTrajectory> }> {
  const session = await backend.createSession(c.options);
  await session.setTargets(c.targets);
  await session.setImages(c.start);
  const first = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: c.steps });
  const images = await session.readImages();
  const after = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
  session.dispose();
  return { first, images, after, ref: referenceAdamTrajectory(weights, c.options, c.targets, c.start, c.steps, DEFAULT_ADAM) };
}
