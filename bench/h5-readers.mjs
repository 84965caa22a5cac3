#!/usr/bin/env node
// Which HDF5 reader should load Keras VGG-19 files? Issue 3 asks to choose
// between h5wasm (the HDF5 C library in WebAssembly) and jsfive (pure
// JavaScript) by measured load time and memory. This writes a file with the
// layout and size of vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (all 16
// convolutions, float32, 80 MB of random values), then reads every kernel and
// bias with each reader, each run in a fresh process so that its peak RSS is
// the reader's own. Usage: node bench/h5-readers.mjs [--runs 3]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const LAYERS = [
  [3, 64],
  [64, 64],
  [64, 128],
  [128, 128],
  [128, 256],
  [256, 256],
  [256, 256],
  [256, 256],
  [256, 512],
  [512, 512],
  [512, 512],
  [512, 512],
  [512, 512],
  [512, 512],
  [512, 512],
  [512, 512],
];
const KERAS_NAMES = LAYERS.map((_, i) => {
  const block = [2, 2, 4, 4, 4];
  let b = 0,
    k = i;
  while (k >= block[b]) k -= block[b++];
  return `block${b + 1}_conv${k + 1}`;
});

async function readAll(reader, file) {
  const t0 = performance.now();
  let values = 0;
  let checksum = 0;
  if (reader === 'h5wasm') {
    const h5wasm = (await import('h5wasm/node')).default;
    await h5wasm.ready;
    const f = new h5wasm.File(file, 'r');
    for (const name of KERAS_NAMES)
      for (const part of ['kernel:0', 'bias:0']) {
        const v = f.get(`${name}/${name}/${part}`).value;
        values += v.length;
        checksum += v[v.length - 1];
      }
    f.close();
  } else {
    const { File } = await import('jsfive');
    const bytes = readFileSync(file);
    const f = new File(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), path.basename(file));
    for (const name of KERAS_NAMES)
      for (const part of ['kernel:0', 'bias:0']) {
        const v = f.get(`${name}/${name}/${part}`).value;
        values += v.length;
        checksum += v[v.length - 1];
      }
  }
  const ms = performance.now() - t0;
  const rss = Number(readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/)[1]) / 1024;
  return { ms, values, checksum, rssMiB: rss };
}

if (process.argv[2] === '--child') {
  console.log(JSON.stringify(await readAll(process.argv[3], process.argv[4])));
  process.exit(0);
}

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 3;
const dir = mkdtempSync(path.join(os.tmpdir(), 'nst-h5-'));
try {
  const file = path.join(dir, 'vgg19-notop.h5');
  const h5wasm = (await import('h5wasm/node')).default;
  await h5wasm.ready;
  const f = new h5wasm.File(file, 'w');
  let seed = 1;
  const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296 - 0.5) * 0.1;
  LAYERS.forEach(([cin, cout], i) => {
    const inner = f.create_group(KERAS_NAMES[i]).create_group(KERAS_NAMES[i]);
    inner.create_dataset({
      name: 'kernel:0',
      data: Float32Array.from({ length: 9 * cin * cout }, rand),
      shape: [3, 3, cin, cout],
      dtype: '<f',
    });
    inner.create_dataset({ name: 'bias:0', data: Float32Array.from({ length: cout }, rand), shape: [cout], dtype: '<f' });
  });
  f.close();
  const self = fileURLToPath(import.meta.url);
  console.log(
    `file: ${(statSync(file).size / 1e6).toFixed(1)} MB, ${LAYERS.length} convolutions; node ${process.version}; ${os.cpus()[0].model}`,
  );
  console.log('reader   run  load ms  peak RSS MiB  values     checksum');
  for (const reader of ['h5wasm', 'jsfive'])
    for (let r = 0; r < runs; r++) {
      const out = JSON.parse(execFileSync(process.execPath, [self, '--child', reader, file], { encoding: 'utf8' }));
      console.log(
        `${reader.padEnd(8)} ${String(r + 1).padStart(3)}  ${out.ms.toFixed(0).padStart(7)}  ${out.rssMiB.toFixed(0).padStart(12)}  ${out.values}  ${out.checksum.toFixed(6)}`,
      );
    }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
