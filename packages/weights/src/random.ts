/**
 * `random:SEED`: VGG-19-shaped weights for tests and benchmarks. Kernels are
 * He-initialised, normal with std sqrt(2 / (9 * in)), which keeps activation
 * magnitudes roughly constant through the ReLU stack; biases are small
 * (normal, std 0.01). Each layer draws from its own core Rng seeded from
 * (SEED, layer index), so a set is identical on every machine and backend.
 * Speed (20M values, < 1 s): core's Rng seeds, per layer, a small sfc32
 * generator (Doty-Humphrey's "small fast counting" PRNG, which passes
 * PractRand), whose state V8 keeps in registers, and Marsaglia and Tsang's
 * ziggurat turns its words into normals. Drawing every value from the core
 * Rng with Box-Muller took about 1.1 s here; this takes about 0.2 s.
 */
import { PREPROCESSING, Rng, UserError, VGG19_LAYERS, validateWeightSet, type ConvWeights, type WeightSet } from '@nst/core';

export function randomWeights(seed: number): WeightSet {
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new UserError(`random:${seed}: the seed must be an integer in 0..4294967295`);
  const layers: ConvWeights[] = VGG19_LAYERS.map((info) => {
    const rng = Sfc32.seededBy(new Rng((seed ^ Math.imul(info.index + 1, 0x9e3779b1)) >>> 0));
    const kernel = fillNormal(rng, new Float32Array(9 * info.inChannels * info.outChannels), Math.sqrt(2 / (9 * info.inChannels)));
    const bias = fillNormal(rng, new Float32Array(info.outChannels), 0.01);
    return { name: info.name, inChannels: info.inChannels, outChannels: info.outChannels, kernel, bias };
  });
  const set: WeightSet = { layers, preprocessing: PREPROCESSING.caffeBgr, source: `random:${seed}`, format: 'random' };
  validateWeightSet(set);
  return set;
}

/** Parses "random:SEED"; undefined when `source` is not of that form. */
export function parseRandomSource(source: string): number | undefined {
  const m = /^random:(.*)$/.exec(source);
  if (!m) return undefined;
  if (!/^\d{1,10}$/.test(m[1])) throw new UserError(`${source}: expected random:SEED with SEED an integer in 0..4294967295`);
  return Number(m[1]);
}

/** sfc32: 128 bits of state, one add-rotate-xor round per 32-bit word. */
class Sfc32 {
  constructor(
    private a: number,
    private b: number,
    private c: number,
    private d: number,
  ) {
    for (let i = 0; i < 12; i++) this.next(); // the reference warm-up
  }

  static seededBy(rng: Rng): Sfc32 {
    return new Sfc32(rng.nextU32() | 0, rng.nextU32() | 0, rng.nextU32() | 0, rng.nextU32() | 0);
  }

  /** A uniform signed 32-bit integer. */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (((this.c << 21) | (this.c >>> 11)) + t) | 0;
    return t;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return (this.next() >>> 0) / 4294967296;
  }
}

// Ziggurat tables (128 strips), built once.
const ZIG_R = 3.442619855899;
const KN = new Uint32Array(128);
const WN = new Float64Array(128);
const FN = new Float64Array(128);
(() => {
  const m1 = 2147483648;
  const vn = 9.91256303526217e-3;
  let dn = ZIG_R;
  let tn = dn;
  const q = vn / Math.exp(-0.5 * dn * dn);
  KN[0] = (dn / q) * m1;
  KN[1] = 0;
  WN[0] = q / m1;
  WN[127] = dn / m1;
  FN[0] = 1;
  FN[127] = Math.exp(-0.5 * dn * dn);
  for (let i = 126; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(vn / dn + Math.exp(-0.5 * dn * dn)));
    KN[i + 1] = (dn / tn) * m1;
    tn = dn;
    FN[i] = Math.exp(-0.5 * dn * dn);
    WN[i] = dn / m1;
  }
})();

/** Fills `out` with normal(0, std) values from `rng`. */
function fillNormal(rng: Sfc32, out: Float32Array, std: number): Float32Array {
  for (let k = 0; k < out.length; k++) {
    const hz = rng.next();
    const iz = hz & 127;
    out[k] = (Math.abs(hz) < KN[iz] ? hz * WN[iz] : zigguratTail(rng, hz, iz)) * std;
  }
  return out;
}

/** The rare slow path: the wedge of strip iz, or the tail beyond ZIG_R. */
function zigguratTail(rng: Sfc32, hz: number, iz: number): number {
  for (;;) {
    const x = hz * WN[iz];
    if (iz === 0) {
      let xt: number;
      let y: number;
      do {
        xt = -Math.log(1 - rng.uniform()) / ZIG_R;
        y = -Math.log(1 - rng.uniform());
      } while (y + y < xt * xt);
      return hz > 0 ? ZIG_R + xt : -ZIG_R - xt;
    }
    if (FN[iz] + rng.uniform() * (FN[iz - 1] - FN[iz]) < Math.exp(-0.5 * x * x)) return x;
    hz = rng.next();
    iz = hz & 127;
    if (Math.abs(hz) < KN[iz]) return hz * WN[iz];
  }
}
