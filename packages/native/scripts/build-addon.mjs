#!/usr/bin/env node
// Builds native/ (the N-API addon) with cmake-js. Run by `npm ci` (the
// package's install script) and by `npm run build:native -w @nst/native`.
//
// A failed build prints why and exits 0, so that a user without a compiler or
// oneDNN still gets the TF.js backend; with CI=true or NST_REQUIRE_NATIVE=1 it
// exits non-zero instead. Either way it leaves <out>/BUILD-FAILED.json
// (reason, missing packages, the command that fixes it), which the loader
// (src/addon.ts) and the quick-start scripts read, since npm hides the output
// of an install script that exits 0; a successful build removes it. Extra
// arguments go to cmake-js, e.g.
//   node scripts/build-addon.mjs --out native/build/asan --CDNST_ASAN=ON
// NST_SKIP_NATIVE=1 skips the build altogether.
//
// --emulated builds the CUDA engine on the CPU stand-in (native/emulation)
// into native/build-emulated: the addon that NST_CUDA_EMULATION=1 loads.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { REBUILD_COMMAND, fixCommand, missingPrerequisites } from './prerequisites.mjs';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const nativeDir = path.join(repoRoot, 'native');
const strict = process.env.CI === 'true' || process.env.NST_REQUIRE_NATIVE === '1';
const emulated = process.argv.includes('--emulated');
const extra = process.argv.slice(2).filter((a) => a !== '--emulated');
if (emulated) extra.push('--out', 'native/build-emulated', '--CDNST_CUDA_EMULATION=ON');
const outIndex = extra.indexOf('--out');
const outDir = outIndex >= 0 ? extra[outIndex + 1] : 'native/build';
const record = path.resolve(repoRoot, outDir, 'BUILD-FAILED.json');
const rebuild = emulated ? 'npm run build:native:emulated -w @nst/native' : REBUILD_COMMAND;

function writeRecord(reason, missing, fix) {
  mkdirSync(path.dirname(record), { recursive: true });
  writeFileSync(record, JSON.stringify({ reason, missing, fix, at: new Date().toISOString(), node: process.version }, null, 2) + '\n');
}

if (process.env.NST_SKIP_NATIVE === '1') {
  console.log('nst native addon: skipped (NST_SKIP_NATIVE=1)');
  writeRecord('skipped on purpose (NST_SKIP_NATIVE=1)', [], rebuild);
  process.exit(0);
}

function fail(reason, { log = '', missing = [], fix = `fix the cause, then ${rebuild} (NST_VERBOSE_BUILD=1 shows the whole log)` } = {}) {
  if (log) process.stderr.write(log.split('\n').slice(-40).join('\n') + '\n');
  writeRecord(reason, missing, fix);
  console.error(`nst native addon: build failed: ${reason}: ${fix}`);
  if (strict) process.exit(1);
  console.error('nst native addon: continuing without it (the tfjs backend still works; set NST_REQUIRE_NATIVE=1 to make this fatal)');
  process.exit(0);
}

// The system's part first: a missing package is named as such, not as CMake's first error.
const missing = missingPrerequisites();
if (missing.length > 0)
  fail(`${missing.map((m) => m.what).join(', ')} not found`, { missing, fix: fixCommand(missing, undefined, rebuild) });

let cmakeJs;
try {
  cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
} catch {
  fail('cmake-js is not installed', { fix: 'npm ci' });
}

const args = [cmakeJs, 'compile', '--directory', nativeDir, ...extra];
const run = spawnSync(process.execPath, args, { encoding: 'utf8', cwd: repoRoot, maxBuffer: 64 << 20 });
const log = `${run.stdout ?? ''}${run.stderr ?? ''}`;
if (run.status !== 0) fail(firstCause(log), { log });
if (process.env.NST_VERBOSE_BUILD === '1') process.stdout.write(log);
rmSync(record, { force: true });
const cuda = /CUDA: (.*)/.exec(log);
console.log(`nst native addon: built in ${outDir}${cuda ? ` (${cuda[1].trim()})` : ''}`);

// The line of the build log that names the cause: a CMake error or a compiler error.
function firstCause(text) {
  const lines = text.split('\n');
  const cmakeError = lines.findIndex((l) => l.startsWith('CMake Error'));
  if (cmakeError >= 0)
    return lines
      .slice(cmakeError + 1, cmakeError + 4)
      .map((l) => l.trim())
      .filter(Boolean)
      .join(' ');
  const compileError = lines.find((l) => /error:/.test(l));
  return compileError?.trim() ?? 'cmake-js failed (see the log above)';
}
