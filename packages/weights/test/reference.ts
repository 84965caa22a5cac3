/** The reference layers every format test writes and reads back (no vitest here: the bench fuzzer uses it too). */
import { VGG19_LAYERS } from '@nst/core';

/** A small integer hash -> float in [-1, 1): distinct, exactly representable test values. */
export function testValue(layer: number, kind: number, i: number): number {
  let x = (Math.imul(layer + 1, 73856093) ^ Math.imul(kind + 1, 19349663) ^ Math.imul(i + 1, 83492791)) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
  return ((x >>> 8) - 8388608) / 8388608;
}

/** Reference HWIO kernel and bias of layer `index` (the "truth" every format test writes and reads back). */
export function referenceLayer(index: number): { name: string; I: number; O: number; kernel: Float32Array; bias: Float32Array } {
  const l = VGG19_LAYERS[index];
  const kernel = Float32Array.from({ length: 9 * l.inChannels * l.outChannels }, (_, i) => testValue(index, 0, i));
  const bias = Float32Array.from({ length: l.outChannels }, (_, i) => testValue(index, 1, i));
  return { name: l.name, I: l.inChannels, O: l.outChannels, kernel, bias };
}
