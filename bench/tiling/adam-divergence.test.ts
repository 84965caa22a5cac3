/**
 * Issue 20: is the tiled session's divergence from the untiled one after
 * Adam iterations a defect of tiling or float32 chaos? Runs, from the same
 * start (random full VGG-19 weights, default loss, tiled-suite.ts's targets),
 * the untiled session ('untiled', the reference), the untiled one from the
 * start perturbed by one ulp per element ('ulp'), Winograd convolutions
 * untiled ('winograd'), the tiled session with nets kept between the passes
 * ('kept', netBudget 2**31) and without ('nokept'), one Adam step per call,
 * and prints per iteration each run's image (relative L2) and loss (relative)
 * against the reference. Measured: packages/native/test/tiled-suite.ts, CHAOS.
 *
 *   H=480 W=640 CORE=192 ITERS=20 RUNS=untiled,ulp,kept,nokept \
 *     nice npx vitest run --config bench/tiling/vitest.config.ts
 *
 * (about 13 minutes on 2 cores at 640x480; the defaults, 320x240 in 96-px tiles, 2.)
 */
import { it } from 'vitest';
import { DEFAULT_ADAM, DEFAULT_LOSS, adamStepSizes, type Backend, type Session } from '@nst/core';
import { createTiledSession } from '@nst/job';
import { createNativeBackend } from '@nst/native';
import { testImage } from '../../test/reference/random-weights.js';
import { relL2 } from '../../packages/native/test/helpers.js';
import { WEIGHTS, perturbUlp, targetsFor, type TiledCase } from '../../packages/native/test/tiled-suite.js';

const H = Number(process.env.H ?? 240);
const W = Number(process.env.W ?? 320);
const CORE = Number(process.env.CORE ?? 96);
const N = Number(process.env.ITERS ?? 20);
const RUNS = (process.env.RUNS ?? 'untiled,ulp,kept,nokept,winograd').split(',');

const c: TiledCase = { name: 'x', height: H, width: W, core: CORE, pooling: 'avg', loss: DEFAULT_LOSS, adamIterations: N };

interface Traj {
  images: Float32Array[];
  losses: number[];
  m: Float32Array;
  ms: number;
}

async function trajectory(session: Session, x0: Float32Array): Promise<Traj> {
  const t0 = performance.now();
  try {
    await session.setTargets(targetsFor(c));
    await session.setImages(x0);
    const sizes = adamStepSizes(DEFAULT_ADAM, 1, N);
    const images: Float32Array[] = [x0.slice()];
    const losses: number[] = [];
    for (let k = 0; k < N; k++) {
      losses.push((await session.iterate({ adam: DEFAULT_ADAM, stepSizes: sizes.subarray(k, k + 1) }))[0].total);
      images.push(await session.readImages());
    }
    losses.push((await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) }))[0].total);
    return { images, losses, m: (await session.readOptimizerState()).m, ms: performance.now() - t0 };
  } finally {
    session.dispose();
  }
}

it('adam divergence', async () => {
  const x0 = testImage(1, H * W * 3);
  const results: Record<string, Traj> = {};
  for (const run of RUNS) {
    process.env.NST_CPU_WINOGRAD = run === 'winograd' ? '1' : '0';
    const backend: Backend = await createNativeBackend('cpu', { precision: 'fp32' });
    await backend.loadWeights(WEIGHTS);
    const options = { height: H, width: W, batch: 1, pooling: 'avg' as const, loss: DEFAULT_LOSS };
    let session: Session;
    if (run === 'kept' || run === 'nokept')
      session = createTiledSession(backend, { ...options, core: CORE, contentTargets: 'keep', netBudget: run === 'kept' ? 2 ** 31 : 0 });
    else session = await backend.createSession(options);
    results[run] = await trajectory(session, run === 'ulp' ? perturbUlp(x0) : x0);
    backend.dispose();
    console.log(`${run}: ${(results[run].ms / 1000).toFixed(1)} s`);
  }
  const base = results.untiled;
  const lines: string[] = [`${W}x${H} core ${CORE}, ${N} iterations; per iteration k: image rel L2 / loss rel vs untiled`];
  for (let k = 0; k <= N; k++) {
    let line = `k=${String(k).padStart(2)}`;
    for (const run of RUNS) {
      if (run === 'untiled') continue;
      const r = results[run];
      const img = relL2(r.images[k], base.images[k]);
      const dis = k > 0 ? relL2(sub(r.images[k], x0), sub(base.images[k], x0)) : 0;
      const loss = Math.abs(r.losses[k] - base.losses[k]) / base.losses[k];
      line += ` | ${run} img ${img.toExponential(2)} disp ${dis.toExponential(2)} loss ${loss.toExponential(2)}`;
    }
    if (results.kept && results.nokept)
      line += ` | kept-nokept ${relL2(results.kept.images[k], results.nokept.images[k]).toExponential(2)}`;
    lines.push(line);
  }
  for (const run of RUNS) if (run !== 'untiled') lines.push(`${run} m rel ${relL2(results[run].m, base.m).toExponential(2)}`);
  console.log(lines.join('\n'));
}, 3_600_000);

function sub(a: Float32Array, b: Float32Array): Float32Array {
  const d = new Float32Array(a.length);
  for (let i = 0; i < d.length; i++) d[i] = a[i] - b[i];
  return d;
}
