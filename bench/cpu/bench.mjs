#!/usr/bin/env node
// CPU benchmark: seconds per iteration (forward, loss, backward, Adam) and
// effective GFLOP/s of the native cpu backend and the TF.js backend, side by
// side, each measurement in its own child process so that its peak RSS is
// its own. Effective FLOPs = 2 x forwardFlops(conv5_1): the convolutions of
// the forward pass and of the gradient to the pixels (what NST-SPEC.md's
// cost table counts); the Gram/loss work is on top and not credited.
//
//   npm run build && node bench/cpu/bench.mjs [--quick] [--tfjs-all] [--only=cpu,tfjs,tfjs-stock]
//   npm run build && node bench/cpu/bench.mjs --precision [--rounds=2] [--quick]
//
// Backends: cpu (the native oneDNN engine in fp32, Winograd where it has it),
// cpu-direct (the same with NST_CPU_WINOGRAD=0: direct convolutions only), tfjs (our tuned packages/tfjs:
// multi-threaded wasm), tfjs-stock (tfjs-stock.mjs: a plain TF.js version on
// the wasm backend as shipped, single-threaded in Node: the baseline meant by
// "the TF.js WASM backend"), cpu-bf16 (the native engine in bf16; on a
// processor without native bf16 it is refused, and the row says so),
// torch-fp32 and torch-bf16 (torch_cpu.py: PyTorch eager, channels_last, fp32
// and bf16 autocast; Debian's python3-torch, found as NST_TORCH_PYTHON, else
// the first python3 on PATH or /usr/bin/python3 that imports torch).
//
// --precision: the bf16 comparison, side by side in one run: cpu (fp32),
// cpu-bf16, torch-fp32, torch-bf16 at 300x400 and 512x512, the whole list
// repeated --rounds times (default 2), rows interleaved, so that every
// number meets the same load; then the speedups, from each row's best round.
// --baseline-addon=PATH adds cpu-baseline: fp32 on another build of the addon
// (NST_NATIVE_ADDON=PATH; e.g. one built from the commit before bf16), to see
// that fp32 did not regress.
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
const precisionMode = args.includes('--precision');
const rounds = Number(args.find((a) => a.startsWith('--rounds='))?.slice(9) ?? (precisionMode ? 2 : 1));
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
const baselineAddon = args.find((a) => a.startsWith('--baseline-addon='))?.slice(17);
const precisionBackends = [...(baselineAddon ? ['cpu-baseline'] : []), 'cpu', 'cpu-bf16', 'torch-fp32', 'torch-bf16'];
const precisionPlan = precisionBackends.flatMap((backend) => [
  [backend, 300, 400, quick ? 2 : 5],
  [backend, 512, 512, quick ? 1 : 3],
]);
// tfjs at 512x512 takes minutes per iteration on 2 cores: only on request.
const defaultPlan = [
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
];
const plan = Array.from({ length: rounds }, () => (precisionMode ? precisionPlan : defaultPlan))
  .flat()
  .filter(([backend]) => !only || only.includes(backend));

const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
const machine = {
  cpu: (/model name\s*:\s*(.*)/.exec(cpuinfo) ?? [])[1] ?? os.cpus()[0]?.model,
  cores: os.availableParallelism(),
  memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
  avx512: /avx512f/.test(cpuinfo),
  // Native bf16, as the processor reports it (the engine asks oneDNN: the same on a normal system).
  bf16: /\bamx_bf16\b/.test(cpuinfo) ? 'AMX-BF16' : /\bavx512_bf16\b/.test(cpuinfo) ? 'AVX512-BF16 (no AMX)' : 'none',
  node: process.version,
  // The machine may be shared: a busy one slows every number below.
  loadAverage1m: +os.loadavg()[0].toFixed(2),
};
console.log(
  `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB${machine.avx512 ? ', AVX-512' : ''}, native bf16: ${machine.bf16}, Node ${machine.node}, load ${machine.loadAverage1m}`,
);

const results = [];
for (const [i, [backend, h, w, n]] of plan.entries()) {
  const round = Math.floor(i / (plan.length / rounds)) + 1;
  const load = +os.loadavg()[0].toFixed(2);
  const child = backend.startsWith('torch')
    ? spawnSync(
        torchPython(),
        [
          fileURLToPath(new URL('./torch_cpu.py', import.meta.url)),
          '--height',
          h,
          '--width',
          w,
          '--steps',
          n,
          ...(backend === 'torch-bf16' ? ['--bf16'] : []),
        ],
        {
          encoding: 'utf8',
          maxBuffer: 16 << 20,
        },
      )
    : spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--one', backend, h, w, n], {
        encoding: 'utf8',
        env:
          backend === 'cpu-direct'
            ? { ...process.env, NST_CPU_WINOGRAD: '0' }
            : backend === 'cpu-baseline'
              ? { ...process.env, NST_NATIVE_ADDON: baselineAddon }
              : process.env,
        maxBuffer: 16 << 20,
      });
  const line = backend.startsWith('torch')
    ? child.stdout?.split('\n').find((l) => l.startsWith('{'))
    : child.stdout?.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) {
    console.log(
      `${backend} ${h}x${w}: failed: ${`${child.stderr || child.stdout || child.error}`.trim().split('\n').slice(-3).join(' | ')}`,
    );
    continue;
  }
  const r = backend.startsWith('torch') ? await torchResult(backend, JSON.parse(line)) : JSON.parse(line.slice(7));
  r.round = round;
  r.loadAverage1m = load;
  results.push(r);
  console.log(
    `${rounds > 1 ? `[${round}] ` : ''}${r.detail.padEnd(60)} ${`${h}x${w}`.padStart(8)}  ${r.secondsPerIteration.toFixed(3).padStart(8)} s/it  ` +
      `${r.gflops.toFixed(1).padStart(7)} GFLOP/s  ${r.cpuSecondsPerIteration === undefined ? '' : `cpu ${r.cpuSecondsPerIteration.toFixed(3)} s/it  `}peak RSS ${r.peakRssMiB.toFixed(0)} MiB  (${r.iterations} it${r.setupSeconds === undefined ? '' : `, setup ${r.setupSeconds.toFixed(1)} s`}, load ${load})`,
  );
}

/** Each backend's best round at a size (the least disturbed on a shared machine). */
const best = (backend, r) =>
  results
    .filter((x) => x.backend === backend && x.height === r.height && x.width === r.width)
    .reduce((a, b) => (!a || b.secondsPerIteration < a.secondsPerIteration ? b : a), undefined);
// Same-size speedups of the native backend over the others (bf16 too, in --precision).
const sizes = [...new Map(results.map((r) => [`${r.height}x${r.width}`, r])).values()];
for (const base of precisionMode ? ['cpu-bf16', 'cpu'] : ['cpu']) {
  for (const size of sizes) {
    const c = best(base, size);
    if (!c) continue;
    for (const other of [...new Set(results.map((r) => r.backend))].filter((b) => b !== base && !(base === 'cpu' && b === 'cpu-bf16'))) {
      const t = best(other, size);
      if (t)
        console.log(
          `speedup ${size.height}x${size.width}: ${base} is ${(t.secondsPerIteration / c.secondsPerIteration).toFixed(2)}x faster than ${t.detail}` +
            ` (peak RSS ${c.peakRssMiB.toFixed(0)} vs ${t.peakRssMiB.toFixed(0)} MiB)`,
        );
    }
  }
}

const dir = fileURLToPath(new URL('../results/', import.meta.url));
mkdirSync(dir, { recursive: true });
const file = `${dir}cpu-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(file, JSON.stringify({ machine, results }, null, 2));
console.log(`wrote ${file}`);

/** The python3 that imports torch (Debian's python3-torch is /usr/bin/python3's). */
function torchPython() {
  for (const python of [process.env.NST_TORCH_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean))
    if (spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return python;
  return 'python3';
}

/** torch_cpu.py's line as a row: the same FLOP count as the native rows. */
async function torchResult(backend, t) {
  const { DEFAULT_LOSS, deepestLayerIndex, forwardFlops } = await import('@nst/core');
  const flops = 2 * forwardFlops(deepestLayerIndex(DEFAULT_LOSS), t.height, t.width);
  return {
    backend,
    detail: t.detail,
    height: t.height,
    width: t.width,
    iterations: t.steps,
    secondsPerIteration: t.seconds_per_iteration,
    cpuSecondsPerIteration: t.cpu_seconds_per_iteration,
    gflops: flops / t.seconds_per_iteration / 1e9,
    gflopPerIteration: flops / 1e9,
    peakRssMiB: t.peak_rss_mib,
  };
}

async function measure(backendName, height, width, iterations) {
  const { DEFAULT_ADAM, DEFAULT_LOSS, adamStepSizes, deepestLayerIndex, forwardFlops } = await import('@nst/core');
  const { randomWeights } = await import('@nst/weights');
  const setupStart = performance.now();
  const backend = backendName.startsWith('cpu')
    ? await (await import('@nst/native')).createNativeBackend('cpu', { precision: backendName === 'cpu-bf16' ? 'bf16' : 'fp32' })
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
  const cpuStart = process.cpuUsage();
  await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 2, iterations) });
  const secondsPerIteration = (performance.now() - start) / 1000 / iterations;
  // The process's CPU time (all its threads): on a shared machine less disturbed by others than the wall clock.
  const cpu = process.cpuUsage(cpuStart);
  const cpuSecondsPerIteration = (cpu.user + cpu.system) / 1e6 / iterations;
  const flops = 2 * forwardFlops(deepestLayerIndex(DEFAULT_LOSS), height, width);
  const detail = backendName.startsWith('cpu')
    ? `${backend.detail.slice(0, -1)}, ${backendName === 'cpu-bf16' || process.env.NST_CPU_WINOGRAD === '0' ? 'direct' : 'winograd'}${backendName === 'cpu-baseline' ? ', baseline addon' : ''})`
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
    cpuSecondsPerIteration,
    gflops: flops / secondsPerIteration / 1e9,
    gflopPerIteration: flops / 1e9,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    setupSeconds,
  };
}
