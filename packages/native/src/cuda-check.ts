/**
 * `--backend auto` uses the cuda engine only on a GPU where it has passed a
 * one-time self-check: the kernel self-test (nst_kernel_test, built beside
 * the addon) and one 32x32 loss-and-gradient step against the cpu engine.
 * The verdict is cached per GPU, driver and engine build (a file in the
 * cache folder the caller names), so the check costs its seconds once. The
 * engine emulated on the CPU (NST_CUDA_EMULATION=1) is never chosen here.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '@nst/files';
import { relDiff, relL2, Rng, UserError, type Backend, type LossValues, type WeightSet } from '@nst/core';
import { cudaEmulationRequested, nativeAddonPath, type NativePrecision } from './addon.js';
import { createNativeBackend } from './backend.js';

export interface CudaCheckOptions {
  readonly precision?: NativePrecision | 'auto';
  readonly gpu?: number;
  /** Folder of the verdict cache (the CLI passes nst's cache folder). */
  readonly cacheDir: string;
  /** VGG-19 weights for the parity step (its first 3 layers are used); called on a cache miss only. */
  readonly checkWeights: () => WeightSet;
}

/** The cuda backend when its self-check passes (now or before, cached); else a UserError saying why. */
export async function openCheckedCudaBackend(options: CudaCheckOptions): Promise<Backend> {
  if (cudaEmulationRequested()) {
    throw new UserError('the cuda engine emulated on the CPU (NST_CUDA_EMULATION=1) is used only with --backend cuda');
  }
  return (await checkedCudaBackend(options)).backend;
}

/** As openCheckedCudaBackend, for any build (tests run it on the stand-in); says whether the check ran. */
export async function checkedCudaBackend(options: CudaCheckOptions): Promise<{ backend: Backend; check: 'ran' | 'cached' }> {
  const backend = await createNativeBackend('cuda', { precision: options.precision, gpu: options.gpu });
  try {
    const key = verdictKey(backend.detail, options.gpu ?? 0);
    const file = path.join(options.cacheDir, 'cuda-self-check.json');
    const cache = readVerdicts(file);
    let verdict = cache[key];
    const check = verdict ? 'cached' : 'ran';
    if (!verdict) {
      verdict = await selfCheck(backend, options);
      cache[key] = verdict;
      await fs.mkdir(options.cacheDir, { recursive: true });
      await writeFileAtomic(file, (tmp) => fs.writeFile(tmp, JSON.stringify(cache, null, 2) + '\n'));
    }
    if (!verdict.ok) {
      throw new UserError(
        `the cuda engine failed its self-check on this GPU (${verdict.reason}; cached in ${file}, delete it to check again)`,
      );
    }
    return { backend, check };
  } catch (e) {
    backend.dispose();
    throw e;
  }
}

interface Verdict {
  readonly ok: boolean;
  readonly reason?: string;
  readonly checkedAt: string;
}

function readVerdicts(file: string): Record<string, Verdict> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, Verdict>) : {};
  } catch {
    return {}; // absent or unreadable: check again
  }
}

/** The GPU and libraries (the engine's description), its ordinal, the driver, and the engine build. */
function verdictKey(detail: string, gpu: number): string {
  let driver = 'unknown driver';
  try {
    driver = readFileSync('/proc/driver/nvidia/version', 'utf8').split('\n')[0];
  } catch {
    // not Linux's NVIDIA driver: the description still names the GPU
  }
  const build = (file: string) => (existsSync(file) ? `${statSync(file).size}:${statSync(file).mtimeMs}` : 'absent');
  const text = [detail, `gpu ${gpu}`, driver, build(nativeAddonPath()), build(kernelTestPath())].join('|');
  return createHash('sha256').update(text).digest('hex').slice(0, 32);
}

/** nst_kernel_test sits in the addon's build folder (native/build), one level above Release/. */
function kernelTestPath(): string {
  return path.join(path.dirname(path.dirname(nativeAddonPath())), 'nst_kernel_test');
}

// The tf32 tolerances of the parity tests: the loosest the engine promises.
const LOSS_TOL = 1e-3;
const GRAD_TOL = 3e-3;

async function selfCheck(cuda: Backend, options: CudaCheckOptions): Promise<Verdict> {
  const checkedAt = new Date().toISOString();
  const test = kernelTestPath();
  if (!existsSync(test)) return { ok: false, reason: `kernel self-test not built (${test} is missing)`, checkedAt };
  const run = spawnSync(test, [], { encoding: 'utf8', timeout: 300_000, env: process.env });
  if (run.status !== 0) {
    const failed = `${run.stdout ?? ''}`.split('\n').filter((l) => /FAIL/.test(l));
    return {
      ok: false,
      reason: `kernel self-test exited ${run.status ?? run.signal}${failed.length ? `: ${failed.slice(0, 3).join('; ')}` : ''}`,
      checkedAt,
    };
  }
  const weights = options.checkWeights();
  const prefix: WeightSet = { ...weights, layers: weights.layers.slice(0, 3) };
  const cpu = await createNativeBackend('cpu');
  try {
    const ref = await parityStep(cpu, prefix);
    const got = await parityStep(cuda, prefix);
    const dLoss = relDiff(got.loss.total, ref.loss.total);
    const dGrad = relL2(got.gradient, ref.gradient);
    if (!(dLoss <= LOSS_TOL && dGrad <= GRAD_TOL)) {
      return {
        ok: false,
        reason: `32x32 parity with the cpu engine: loss differs by ${dLoss.toExponential(2)} (limit ${LOSS_TOL}), gradient by ${dGrad.toExponential(2)} (limit ${GRAD_TOL})`,
        checkedAt,
      };
    }
  } finally {
    cpu.dispose();
  }
  return { ok: true, checkedAt };
}

/** Loss and gradient at 32x32: content at conv2_1, style at conv1_1 and conv2_1, TV; seeded images. */
async function parityStep(backend: Backend, weights: WeightSet): Promise<{ loss: LossValues; gradient: Float32Array }> {
  await backend.loadWeights(weights);
  const size = 32;
  const image = (seed: number) => ({
    height: size,
    width: size,
    data: new Rng(seed).fillUniform(new Float32Array(size * size * 3), -50, 50),
  });
  const session = await backend.createSession({
    height: size,
    width: size,
    batch: 1,
    pooling: 'avg',
    loss: {
      contentLayers: [{ layer: 'conv2_1', weight: 1 }],
      styleLayers: [
        { layer: 'conv1_1', weight: 0.5 },
        { layer: 'conv2_1', weight: 0.5 },
      ],
      alpha: 10,
      beta: 40,
      tvWeight: 1e-3,
    },
  });
  try {
    await session.setTargets([{ content: image(1), styles: [{ image: image(2), weight: 1 }] }]);
    await session.setImages(image(3).data);
    const { losses, gradient } = await session.lossAndGradient();
    return { loss: losses[0], gradient };
  } finally {
    session.dispose();
  }
}
