#!/usr/bin/env node
// Builds native/ (the N-API addon) with cmake-js. Run by `npm ci` (the
// package's install script) and by `npm run build:native -w @nst/native`.
//
// A failed build prints why and exits 0, so that a user without a compiler or
// oneDNN still gets the TF.js backend; with CI=true or NST_REQUIRE_NATIVE=1 it
// exits non-zero instead. Extra arguments go to cmake-js, e.g.
//   node scripts/build-addon.mjs --out native/build/asan --CDNST_ASAN=ON
// NST_SKIP_NATIVE=1 skips the build altogether.
//
// --emulated builds the CUDA engine on the CPU stand-in (native/emulation)
// into native/build-emulated: the addon that NST_CUDA_EMULATION=1 loads.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const nativeDir = path.join(repoRoot, 'native');
const strict = process.env.CI === 'true' || process.env.NST_REQUIRE_NATIVE === '1';

if (process.env.NST_SKIP_NATIVE === '1') {
  console.log('nst native addon: skipped (NST_SKIP_NATIVE=1)');
  process.exit(0);
}

function fail(reason, log = '') {
  if (log) process.stderr.write(log.split('\n').slice(-40).join('\n') + '\n');
  console.error(`nst native addon: build failed: ${reason}`);
  if (strict) process.exit(1);
  console.error('nst native addon: continuing without it (the tfjs backend still works; set NST_REQUIRE_NATIVE=1 to make this fatal)');
  process.exit(0);
}

let cmakeJs;
try {
  cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
} catch {
  fail('cmake-js is not installed (npm ci installs it)');
}
const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
if (cmake.error) fail('cmake not found on PATH (install cmake >= 3.18)');

const emulated = process.argv.includes('--emulated');
const extra = process.argv.slice(2).filter((a) => a !== '--emulated');
if (emulated) extra.push('--out', 'native/build-emulated', '--CDNST_CUDA_EMULATION=ON');
const args = [cmakeJs, 'compile', '--directory', nativeDir, ...extra];
const run = spawnSync(process.execPath, args, { encoding: 'utf8', cwd: repoRoot, maxBuffer: 64 << 20 });
const log = `${run.stdout ?? ''}${run.stderr ?? ''}`;
if (run.status !== 0) fail(firstCause(log), log);
if (process.env.NST_VERBOSE_BUILD === '1') process.stdout.write(log);
const cuda = /CUDA: (.*)/.exec(log);
const outIndex = extra.indexOf('--out');
const outDir = outIndex >= 0 ? extra[outIndex + 1] : 'native/build';
console.log(`nst native addon: built in ${outDir}${cuda ? ` (${cuda[1].trim()})` : ''}`);

// The line of the build log that names the cause: a CMake error or a compiler error.
function firstCause(text) {
  const lines = text.split('\n');
  const cmakeError = lines.findIndex((l) => l.startsWith('CMake Error'));
  if (cmakeError >= 0) return lines.slice(cmakeError + 1, cmakeError + 4).map((l) => l.trim()).filter(Boolean).join(' ');
  const compileError = lines.find((l) => /error:/.test(l));
  return compileError?.trim() ?? 'cmake-js failed (see the log above)';
}
