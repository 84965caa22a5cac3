import { describe, expect, it } from 'vitest';
import { adamStepSizes, adamUpdate, DEFAULT_ADAM } from '@nst/core';

// Values worked out by hand (TF1 Adam, lr 2, beta1 0.9, beta2 0.999, eps 1e-8)
// for one parameter starting at 1 with gradients 0.5, -0.25, 0.125:
//   t=1: m = 0.05,  v = 2.5e-4,     lr_t = 2 sqrt(0.001)/0.1       = 0.63245553
//        x = 1 - lr_t m / (sqrt(v) + eps)                          = -0.99999874
//   t=2: m = 0.02,  v = 3.1225e-4,  lr_t = 2 sqrt(0.001999)/0.19   = 0.47063345, x = -1.53267251
//   t=3: m = 0.0305, v = 3.2756275e-4, lr_t = 2 sqrt(0.002997001)/0.271 = 0.40402119, x = -2.21353043
describe('Adam (TF1 form)', () => {
  it('matches hand-computed values over three steps', () => {
    const x = new Float64Array([1]);
    const m = new Float64Array(1);
    const v = new Float64Array(1);
    const lr = adamStepSizes(DEFAULT_ADAM, 1, 3);
    expect(lr[0]).toBeCloseTo(0.63245553, 6);
    expect(lr[1]).toBeCloseTo(0.47063345, 6);
    expect(lr[2]).toBeCloseTo(0.40402119, 6);
    const expected = [
      { m: 0.05, v: 2.5e-4, x: -0.99999874 },
      { m: 0.02, v: 3.1225e-4, x: -1.53267251 },
      { m: 0.0305, v: 3.2756275e-4, x: -2.21353043 },
    ];
    [0.5, -0.25, 0.125].forEach((g, i) => {
      adamUpdate(x, [g], m, v, lr[i], DEFAULT_ADAM);
      expect(m[0]).toBeCloseTo(expected[i].m, 10);
      expect(v[0]).toBeCloseTo(expected[i].v, 12);
      // lr_t is float32 in the schedule, so x carries float32 rounding of lr_t.
      expect(x[0]).toBeCloseTo(expected[i].x, 6);
    });
  });

  it('continues the schedule from any step (resume)', () => {
    const all = adamStepSizes(DEFAULT_ADAM, 1, 50);
    const tail = adamStepSizes(DEFAULT_ADAM, 31, 20);
    expect(Array.from(tail)).toEqual(Array.from(all.subarray(30)));
    // lr_t tends to lr as t grows (bias corrections vanish)
    expect(adamStepSizes(DEFAULT_ADAM, 100000, 1)[0]).toBeCloseTo(2, 4);
  });
});
