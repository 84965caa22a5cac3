// L-BFGS's own cost on the host (the two-loop recursion and line-search
// bookkeeping, without the objective), side by side in one run: core's
// JavaScript vector ops against the native addon's (native/src/vector_ops.cc).
// n = 400 x 300 x 3 (the example's image), history 100 (the default), on a
// Rosenbrock chain, which converges slowly so every iteration uses all pairs.
// Usage: node bench/cpu/lbfgs-host.mjs   (after npm run build and the addon build)
import { JS_VECTOR_OPS, Lbfgs } from '@nst/core';
import { loadNativeAddon } from '@nst/native';

const loaded = loadNativeAddon();
if (!loaded.ok) throw new Error(loaded.reason);
const native = { dot: loaded.addon.vectorDot, axpy: loaded.addon.vectorAxpy };
const n = 400 * 300 * 3;
let objectiveMs = 0;
const objective = async (x) => {
  const t0 = performance.now();
  const gradient = new Float32Array(n);
  let loss = 0;
  for (let i = 0; i < n - 1; i++) {
    const a = 1 - x[i];
    const b = x[i + 1] - x[i] * x[i];
    loss += a * a + 100 * b * b;
    gradient[i] += -2 * a - 400 * b * x[i];
    gradient[i + 1] += 200 * b;
  }
  objectiveMs += performance.now() - t0;
  return { loss, gradient, detail: undefined };
};
const history = 100;
const rows = [];
for (const [name, ops] of [
  ['JavaScript', JS_VECTOR_OPS],
  ['native', native],
  ['JavaScript', JS_VECTOR_OPS],
  ['native', native],
]) {
  const opt = new Lbfgs(new Float32Array(n), objective, { history }, ops);
  for (let k = 0; k < history; k++) await opt.step(); // fill the history
  objectiveMs = 0;
  const t0 = performance.now();
  const iterations = 20;
  for (let k = 0; k < iterations; k++) await opt.step();
  const ms = (performance.now() - t0 - objectiveMs) / iterations;
  rows.push({ ops: name, 'ms per iteration (L-BFGS itself)': ms.toFixed(1) });
}
console.log(
  `n = ${n}, history ${history}, ${process.arch}, ${(await import('node:os')).cpus()[0].model.trim()}, ${(await import('node:os')).cpus().length} cores`,
);
console.table(rows);
