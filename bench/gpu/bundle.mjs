#!/usr/bin/env node
// Bundles the GPU tests and the benchmark into single ESM files that run on
// plain Node (the lent GPU machine has no node_modules): rolldown (vite's
// bundler, already installed) compiles the TypeScript, resolves the
// workspace packages to their sources as vitest.config.ts does, and maps
// 'vitest' to vitest-shim.mjs. Usage: node bench/gpu/bundle.mjs <out-dir>
import { rolldown } from 'rolldown';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const out = path.resolve(process.argv[2] ?? path.join(repo, '.carry/gpu'));
const src = (pkg) => path.join(repo, 'packages', pkg, 'src/index.ts');

for (const [entry, file] of [
  ['run-tests.mjs', 'cuda-tests.mjs'],
  ['bench.ts', 'bench.mjs'],
]) {
  const bundle = await rolldown({
    input: path.join(here, entry),
    platform: 'node',
    resolve: {
      alias: {
        vitest: path.join(here, 'vitest-shim.mjs'),
        '@nst/core': src('core'),
        '@nst/files': src('files'),
        '@nst/native': src('native'),
        '@nst/test-helpers': src('test-helpers'),
      },
    },
    logLevel: 'warn',
  });
  await bundle.write({ file: path.join(out, file), format: 'esm', codeSplitting: false });
  await bundle.close();
  console.log(`bundled ${path.relative(repo, path.join(here, entry))} -> ${path.join(out, file)}`);
}
