/**
 * Fuzzes every weight-file loader with its structural bombs (huge declared
 * dims, zero-field structs, nested cells, zip bombs and overlapping entries,
 * deep, wide and long pickles, huge HDF5 dataspaces, safetensors offsets,
 * TF.js shapes: packages/weights/test/bombs.ts) and with mutated files
 * (truncations, bit flips, overwritten runs, deleted or duplicated chunks,
 * random bytes) of small valid files and of the bombs
 * (packages/weights/test/fuzz-lib.ts). Each case must load or fail with a
 * one-line UserError naming the file (an unmutated bomb must fail); anything
 * else is a crash. Cases run in a child process under a memory cap
 * (prlimit --as: 2 GiB of address space, 4 GiB for keras-h5, whose worker
 * thread and WebAssembly memories reserve more; and a 512 MB JavaScript
 * heap) watched by this one: a case that runs past --case-ms (30 s, above the
 * HDF5 reader's own 20 s limit per request) is a hang
 * (the child is killed and the run goes on), a child that dies (out of
 * memory, a stack overflow) is recorded too. Every case is reproducible from
 * (seed, format, index).
 *
 *   npx turbo run build --filter=@nst/weights
 *   npx tsc --outDir node_modules/.cache/nst-fuzz --rootDir . --module nodenext --moduleResolution nodenext \
 *       --target es2022 --types node --skipLibCheck bench/fuzz-weights.ts
 *   node node_modules/.cache/nst-fuzz/bench/fuzz-weights.js [--total 100000 | --cases N per format] [--formats pth-zip,keras-h5]
 *       [--jobs 2] [--seed 1] [--as-mb 2048] [--as-mb-h5 4096] [--heap-mb 512] [--case-ms 30000] [--json out.json]
 *
 * --write-case FORMAT:INDEX --to DIR writes that case's files into DIR (to reproduce a finding).
 *
 * With --load-times it instead writes full-size files of every format (all 16
 * VGG-19 convs, random weights; the MatConvNet and PyTorch files also carry a
 * 102M-parameter fc6 of zeros after conv5_4, which the loaders must not read)
 * and reports each one's load time and the process's peak RSS.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Rng } from '@nst/core';
import { loadWeights, randomWeights, writeCache } from '@nst/weights';
import { fuzzCorpora, prepareCase, runCase, type CaseResult } from '../packages/weights/test/fuzz-lib.js';
import { matConvLayer, matFile, type MatValue } from '../packages/weights/test/matfile.js';
import { legacyPth, zipPth, type TorchTensor } from '../packages/weights/test/torchfile.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const seed = Number(arg('seed', '1'));
/** Case i of format f always gets the same mutation. */
const caseRng = (f: number, i: number) =>
  new Rng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(f + 1, 0x85ebca6b) ^ Math.imul(i + 1, 0xc2b2ae35)) >>> 0);

if (process.argv.includes('--child')) await child();
else if (process.argv.includes('--load-times')) await loadTimes();
else if (process.argv.includes('--load-one')) await loadOne(arg('load-one', ''));
else if (process.argv.includes('--write-case')) await writeCase(arg('write-case', ''), arg('to', 'fuzz-case'));
else await parent();

/** Runs cases [start, end) of one format, printing one JSON line per case start and end. */
async function child(): Promise<void> {
  const format = arg('format', '');
  const start = Number(arg('start', '0'));
  const end = Number(arg('end', '0'));
  const scratch = arg('scratch', '');
  const corpora = await fuzzCorpora(join(scratch, 'corpus'));
  const f = corpora.findIndex((c) => c.seed.format === format);
  for (let i = start; i < end; i++) {
    process.stdout.write(`${JSON.stringify({ i, phase: 'start' })}\n`);
    const r = await runCase(corpora[f], i, join(scratch, 'case'), caseRng(f, i));
    process.stdout.write(
      `${JSON.stringify({ i, phase: 'end', ...r, message: r.outcome === 'crash' ? r.message : r.message.slice(0, 160) })}\n`,
    );
  }
  process.stdout.write(`${JSON.stringify({ phase: 'done', maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024) })}\n`);
}

interface Summary {
  format: string;
  cases: number;
  bombs: number;
  loaded: number;
  userErrors: number;
  crashes: Array<{ i: number; kind: string; message: string }>;
  hangs: number[];
  died: number[];
  slowest: { i: number; ms: number; kind: string };
  meanMs: number;
  maxRssMB: number;
  seconds: number;
}

/** The child's command line: node under prlimit's address-space cap, with a capped heap. */
interface Limits {
  asMB: number;
  /** For keras-h5: h5wasm's memories and the worker's isolate need more address space, not more memory. */
  asMBh5: number;
  heapMB: number;
  caseMs: number;
}

async function parent(): Promise<void> {
  const limits: Limits = {
    asMB: Number(arg('as-mb', '2048')),
    asMBh5: Number(arg('as-mb-h5', '4096')),
    heapMB: Number(arg('heap-mb', '512')),
    caseMs: Number(arg('case-ms', '30000')),
  };
  const scratch = mkdtempSync(join(tmpdir(), 'nst-fuzz-'));
  const corpora = await fuzzCorpora(join(scratch, 'corpus'));
  const formats = arg('formats', corpora.map((c) => c.seed.format).join(',')).split(',');
  // --total is shared evenly by the formats; --cases gives each format that many.
  const cases = process.argv.includes('--cases') ? Number(arg('cases', '0')) : Math.ceil(Number(arg('total', '100000')) / formats.length);
  const summaries: Summary[] = [];
  const t0 = performance.now();
  // --jobs formats at a time, each in its own child (the summaries keep the formats' order).
  const jobs = Number(arg('jobs', '1'));
  const pending = formats.map((format, k) => ({ format, k }));
  const results: Summary[] = [];
  try {
    await Promise.all(
      Array.from({ length: jobs }, async () => {
        for (let job = pending.shift(); job; job = pending.shift()) {
          const bombs = corpora.find((c) => c.seed.format === job.format)!.bombs.length;
          results[job.k] = await fuzzFormat(job.format, cases, bombs, limits, scratch);
        }
      }),
    );
    summaries.push(...results);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(
    `\n${summaries.reduce((n, s) => n + s.cases, 0)} cases in ${((performance.now() - t0) / 1000).toFixed(0)} s; ` +
      `memory cap: prlimit --as=${limits.asMB} MiB (keras-h5: ${limits.asMBh5} MiB), --max-old-space-size=${limits.heapMB}; time limit per case ${limits.caseMs} ms`,
  );
  console.log(
    'format            cases  bombs  loaded  user-errors  crashes  hangs  died  slowest (ms, case)                   mean ms  max RSS MB',
  );
  for (const s of summaries)
    console.log(
      `${s.format.padEnd(17)} ${String(s.cases).padStart(5)}  ${String(s.bombs).padStart(5)}  ${String(s.loaded).padStart(6)}  ${String(s.userErrors).padStart(11)}  ` +
        `${String(s.crashes.length).padStart(7)}  ${String(s.hangs.length).padStart(5)}  ${String(s.died.length).padStart(4)}  ` +
        `${`${s.slowest.ms.toFixed(0)} (#${s.slowest.i} ${s.slowest.kind})`.padEnd(36)}  ${s.meanMs.toFixed(2).padStart(7)}  ${String(s.maxRssMB).padStart(10)}`,
    );
  for (const s of summaries)
    for (const i of [...s.hangs, ...s.died]) console.log(`${s.hangs.includes(i) ? 'HANG' : 'DIED'} ${s.format} #${i}`);
  for (const s of summaries)
    for (const c of s.crashes.slice(0, 5))
      console.log(`CRASH ${s.format} #${c.i} (${c.kind}): ${c.message.split('\n').slice(0, 4).join(' | ')}`);
  const json = arg('json', '');
  if (json) writeFileSync(json, JSON.stringify(summaries, null, 2));
  process.exitCode = summaries.some((s) => s.crashes.length || s.hangs.length || s.died.length) ? 1 : 0;
}

/** Runs all cases of one format, restarting the child after a hang or a death. */
async function fuzzFormat(format: string, cases: number, bombs: number, limits: Limits, scratch: string): Promise<Summary> {
  const s: Summary = {
    format,
    cases,
    bombs,
    loaded: 0,
    userErrors: 0,
    crashes: [],
    hangs: [],
    died: [],
    slowest: { i: -1, ms: 0, kind: '' },
    meanMs: 0,
    maxRssMB: 0,
    seconds: 0,
  };
  const t0 = performance.now();
  let totalMs = 0;
  let next = 0;
  while (next < cases) {
    // (WebAssembly's trap handler reserves ~10 GB of address space per memory; without it h5wasm runs under the cap.)
    const asMB = format === 'keras-h5' ? limits.asMBh5 : limits.asMB;
    const child = spawn(
      'prlimit',
      [
        `--as=${asMB * 1024 * 1024}`,
        '--',
        process.execPath,
        `--max-old-space-size=${limits.heapMB}`,
        '--disable-wasm-trap-handler',
        process.argv[1],
        '--child',
        '--format',
        format,
        '--start',
        String(next),
        '--end',
        String(cases),
        '--scratch',
        join(scratch, format),
        '--seed',
        String(seed),
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stderr!.resume(); // HDF5 or zlib chatter is not a result
    let current = -1;
    let timer: NodeJS.Timeout | undefined;
    // The first line waits for the corpus to be built; then each case has caseMs.
    const arm = (ms = limits.caseMs) => {
      clearTimeout(timer);
      timer = setTimeout(() => child.kill('SIGKILL'), ms);
    };
    arm(Math.max(60_000, limits.caseMs));
    let killed = false;
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code, signal) => ((killed = signal === 'SIGKILL'), resolve(code))),
    );
    let done = false;
    for await (const line of createInterface({ input: child.stdout! })) {
      arm();
      const m = JSON.parse(line) as { phase: string; i: number; maxRssMB?: number } & CaseResult;
      if (m.phase === 'start') current = m.i;
      else if (m.phase === 'done') {
        s.maxRssMB = Math.max(s.maxRssMB, m.maxRssMB ?? 0);
        done = true;
      } else {
        next = m.i + 1;
        current = -1;
        totalMs += m.ms;
        if (m.ms > s.slowest.ms) s.slowest = { i: m.i, ms: m.ms, kind: m.kind };
        if (m.outcome === 'loaded') s.loaded++;
        else if (m.outcome === 'user-error') s.userErrors++;
        else s.crashes.push({ i: m.i, kind: m.kind, message: m.message });
      }
    }
    clearTimeout(timer);
    const code = await exited;
    if (done) break;
    // The child stopped mid-case: killed by the watchdog (hang) or died on its own.
    const at = current >= 0 ? current : next;
    (killed && code === null ? s.hangs : s.died).push(at);
    next = at + 1;
  }
  s.meanMs = totalMs / Math.max(1, s.loaded + s.userErrors + s.crashes.length);
  s.seconds = (performance.now() - t0) / 1000;
  process.stderr.write(`${format}: ${cases} cases in ${s.seconds.toFixed(0)} s\n`);
  return s;
}

/** Writes one full-size file per format, loads each (twice: cold and warm page cache) and prints the times. */
async function loadTimes(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'nst-loadtimes-'));
  const set = randomWeights(7);
  const fc6 = new Float32Array(7 * 7 * 512 * 4096); // zeros: compresses to almost nothing
  const files: Array<[string, string]> = [];
  try {
    files.push(['safetensors cache (conv1_1..conv5_1)', await writeCache(set, join(dir, 'cache.safetensors'))]);
    const str = (text: string): MatValue => ({ t: 'char', text });
    const layers: MatValue[] = set.layers.map((l) => matConvLayer(l.name, l.kernel, l.bias, l.inChannels, l.outChannels));
    layers.push({
      t: 'struct',
      fields: [
        ['name', str('fc6')],
        ['type', str('conv')],
        [
          'weights',
          {
            t: 'cell',
            dims: [1, 2],
            items: [
              { t: 'single', dims: [7, 7, 512, 4096], data: fc6 },
              { t: 'single', dims: [4096, 1], data: new Float32Array(4096) },
            ],
          },
        ],
      ],
    });
    const meta: MatValue = {
      t: 'struct',
      fields: [
        ['normalization', { t: 'struct', fields: [['averageImage', { t: 'single', dims: [1, 1, 3], data: [123.68, 116.779, 103.939] }]] }],
      ],
    };
    for (const compressed of [true, false]) {
      const path = join(dir, `vgg-${compressed ? 'v7' : 'v6'}.mat`);
      writeFileSync(
        path,
        matFile(
          [
            ['layers', { t: 'cell', dims: [1, layers.length], items: layers }],
            ['meta', meta],
          ],
          compressed,
        ),
      );
      files.push([`MatConvNet ${compressed ? 'v7 (zlib)' : 'v6'} + fc6`, path]);
    }
    const tensors: TorchTensor[] = set.layers.flatMap((l, k) => {
      const oihw = new Float32Array(l.kernel.length);
      const I = l.inChannels,
        O = l.outChannels;
      for (let o = 0; o < O; o++)
        for (let i = 0; i < I; i++)
          for (let h = 0; h < 3; h++)
            for (let w = 0; w < 3; w++) oihw[((o * I + i) * 3 + h) * 3 + w] = l.kernel[((h * 3 + w) * I + i) * O + o];
      const idx = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34][k];
      return [
        { key: `features.${idx}.weight`, storageKey: `w${k}`, data: oihw, offset: 0, size: [O, I, 3, 3], stride: [9 * I, 9, 3, 1] },
        { key: `features.${idx}.bias`, storageKey: `b${k}`, data: l.bias, offset: 0, size: [O], stride: [1] },
      ];
    });
    tensors.push({ key: 'classifier.0.weight', storageKey: 'fc6', data: fc6, offset: 0, size: [4096, 25088], stride: [25088, 1] });
    writeFileSync(join(dir, 'vgg-zip.pth'), zipPth(tensors));
    files.push(['PyTorch zip + fc6', join(dir, 'vgg-zip.pth')]);
    writeFileSync(join(dir, 'vgg-legacy.pth'), legacyPth(tensors));
    files.push(['PyTorch legacy + fc6', join(dir, 'vgg-legacy.pth')]);
    const h5wasm = (await import('h5wasm/node')).default;
    await h5wasm.ready;
    const h5 = new h5wasm.File(join(dir, 'vgg-notop.h5'), 'w');
    for (const l of set.layers) {
      const g = h5.create_group(l.name.replace(/^conv(\d)_(\d)$/, 'block$1_conv$2'));
      const inner = g.create_group(g.path.slice(1));
      inner.create_dataset({ name: 'kernel:0', data: l.kernel, shape: [3, 3, l.inChannels, l.outChannels], dtype: '<f' });
      inner.create_dataset({ name: 'bias:0', data: l.bias, shape: [l.outChannels], dtype: '<f' });
    }
    h5.close();
    files.push(['Keras HDF5 notop (h5wasm)', join(dir, 'vgg-notop.h5')]);
    const { statSync } = await import('node:fs');
    const { execFileSync } = await import('node:child_process');
    // Each load in a fresh process (twice), so that its peak RSS is the loader's own.
    for (const [what, path] of files) {
      const runs = [0, 1].map(() => execFileSync(process.execPath, [process.argv[1], '--load-one', path], { encoding: 'utf8' }).trim());
      console.log(`${what.padEnd(38)} ${(statSync(path).size / 1e6).toFixed(0).padStart(5)} MB  ${runs.join('  |  ')}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Loads one file in this (fresh) process and prints the time, layer count and peak RSS. */
async function loadOne(path: string): Promise<void> {
  const t0 = performance.now();
  const set = await loadWeights(path);
  const ms = performance.now() - t0;
  // VmHWM, not getrusage's maxRSS: Linux carries the parent's maxRSS into a forked child.
  const { readFileSync } = await import('node:fs');
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024;
  console.log(`${set.layers.length} layers in ${ms.toFixed(0).padStart(5)} ms, peak RSS ${hwm.toFixed(0)} MB`);
}

/** Writes case INDEX of FORMAT (as the fuzz run generated it) into `to`, without loading it. */
async function writeCase(spec: string, to: string): Promise<void> {
  const [format, index] = spec.split(':');
  const scratch = mkdtempSync(join(tmpdir(), 'nst-fuzz-case-'));
  try {
    const corpora = await fuzzCorpora(join(scratch, 'corpus'));
    const f = corpora.findIndex((c) => c.seed.format === format);
    const { path, kind } = prepareCase(corpora[f], Number(index), to, caseRng(f, Number(index)));
    console.log(`${path} (${kind})`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
