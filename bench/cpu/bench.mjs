#!/usr/bin/env node
// CPU benchmark: seconds per iteration (forward, loss, backward, Adam) and
// effective GFLOP/s of the native cpu backend and the TF.js backend, side by
// side, each measurement in its own child process so that its peak RSS is
// its own. Effective FLOPs = 2 x forwardFlops(conv5_1): the convolutions of
// the forward pass and of the gradient to the pixels (what NST-SPEC.md's
// cost table counts); the Gram/loss work is on top and not credited.
//
//   npm run build && node bench/cpu/bench.mjs [--quick] [--tfjs-all] [--only=cpu,tfjs,tfjs-stock]
//
// Backends: cpu (the native oneDNN engine, Winograd where it has it),
// cpu-direct (the same with NST_CPU_WINOGRAD=0: direct convolutions only), tfjs (our tuned packages/tfjs:
// multi-threaded wasm), tfjs-stock (tfjs-stock.mjs: a plain TF.js version on
// the wasm backend as shipped, single-threaded in Node: the baseline meant by
// "the TF.js WASM backend").
//
// Uses the built dist/ of the workspace packages (run `npx turbo run build`).
// Writes bench/results/cpu-<time>.json (git-ignored) and prints a table.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);

if (args[0] === '--one') {
  const [, backendName, h, w, n] = args;
  const result = await measure(backendName, Number(h), Number(w), Number(n));
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  process.exit(0);
}

const quick = args.includes('--quick');
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
// tfjs at 512x512 takes minutes per iteration on 2 cores: only on request.
const plan = [
  ['cpu', 128, 128, quick ? 3 : 10],
  ['cpu', 300, 400, quick ? 2 : 5],
  ['cpu', 512, 512, quick ? 1 : 3],
  ['cpu-direct', 300, 400, quick ? 2 : 5],
  ['cpu-direct', 512, 512, quick ? 1 : 3],
  ['tfjs', 128, 128, quick ? 1 : 2],
  ['tfjs', 300, 400, quick ? 1 : 2],
  // Stock wasm takes ~40 s per iteration at 300x400: one warm-up, then 2.
  ['tfjs-stock', 300, 400, quick ? 1 : 2],
  ...(args.includes('--tfjs-all')
    ? [
        ['tfjs', 512, 512, 1],
        ['tfjs-stock', 512, 512, 1],
      ]
    : []),
].filter(([backend]) => !only || only.includes(backend));

const machine = {
  cpu: (/model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8')) ?? [])[1] ?? os.cpus()[0]?.model,
  cores: os.availableParallelism(),
  memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
  avx512: /avx512f/.test(readFileSync('/proc/cpuinfo', 'utf8')),
  node: process.version,
  // The machine may be shared: a busy one slows every number below.
  loadAverage1m: +os.loadavg()[0].toFixed(2),
};
console.log(
  `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB${machine.avx512 ? ', AVX-512' : ''}, Node ${machine.node}, load ${machine.loadAverage1m}`,
);

const results = [];
for (const [backend, h, w, n] of plan) {
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--one', backend, h, w, n], {
    encoding: 'utf8',
    env: backend === 'cpu-direct' ? { ...process.env, NST_CPU_WINOGRAD: '0' } : process.env,
    maxBuffer: 16 << 20,
  });
  const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) {
    console.log(`${backend} ${h}x${w}: failed: ${(child.stderr || child.stdout).trim().split('\n').slice(-3).join(' | ')}`);
    continue;
  }
  const r = JSON.parse(line.slice(7));
  results.push(r);
  console.log(
    `${r.detail.padEnd(44)} ${`${h}x${w}`.padStart(8)}  ${r.secondsPerIteration.toFixed(3).padStart(8)} s/it  ` +
      `${r.gflops.toFixed(1).padStart(7)} GFLOP/s  peak RSS ${r.peakRssMiB.toFixed(0)} MiB  (${r.iterations} it, setup ${r.setupSeconds.toFixed(1)} s)`,
  );
}

// Same-size speedups of the native backend over the others.
for (const t of results.filter((r) => r.backend !== 'cpu')) {
  const c = results.find((r) => r.backend === 'cpu' && r.height === t.height && r.width === t.width);
  if (c)
    console.log(
      `speedup ${t.height}x${t.width}: cpu is ${(t.secondsPerIteration / c.secondsPerIteration).toFixed(1)}x faster than ${t.detail}`,
    );
}

const dir = fileURLToPath(new URL('../results/', import.meta.url));
mkdirSync(dir, { recursive: true });
const file = `${dir}cpu-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(file, JSON.stringify({ machine, results }, null, 2));
console.log(`wrote ${file}`);

async function measure(backendName, height, width, iterations) {
  const { DEFAULT_ADAM, DEFAULT_LOSS, adamStepSizes, deepestLayerIndex, forwardFlops } = await import('@nst/core');
  const { randomWeights } = await import('@nst/weights');
  const setupStart = performance.now();
  const backend = backendName.startsWith('cpu')
    ? await (await import('@nst/native')).createNativeBackend('cpu')
    : backendName === 'tfjs-stock'
      ? await (await import('./tfjs-stock.mjs')).createStockBackend()
      : await (await import('@nst/tfjs')).createTfjsBackend();
  await backend.loadWeights(randomWeights(1));
  const session = await backend.createSession({ height, width, batch: 1, pooling: 'avg', loss: DEFAULT_LOSS });
  const image = (seed) => {
    const data = new Float32Array(height * width * 3);
    let s = seed;
    for (let i = 0; i < data.length; i++) data[i] = ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 200 - 100;
    return { height, width, data };
  };
  await session.setTargets([{ content: image(1), styles: [{ image: image(2), weight: 1 }] }]);
  await session.setImages(image(3).data);
  // One warm-up update: first-touch page faults, JIT kernels, tfjs shader/graph caches.
  await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 1, 1) });
  const setupSeconds = (performance.now() - setupStart) / 1000;
  const start = performance.now();
  await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 2, iterations) });
  const secondsPerIteration = (performance.now() - start) / 1000 / iterations;
  const flops = 2 * forwardFlops(deepestLayerIndex(DEFAULT_LOSS), height, width);
  const detail = backendName.startsWith('cpu')
    ? `${backend.detail.slice(0, -1)}, ${process.env.NST_CPU_WINOGRAD === '0' ? 'direct' : 'winograd'})`
    : backend.detail;
  session.dispose();
  backend.dispose();
  return {
    backend: backendName,
    detail,
    height,
    width,
    iterations,
    secondsPerIteration,
    gflops: flops / secondsPerIteration / 1e9,
    gflopPerIteration: flops / 1e9,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    setupSeconds,
  };
}
