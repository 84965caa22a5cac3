/**
 * The CUDA engine's pure host logic, tested without a GPU: compiles
 * native/src/cuda/test/host_test.cc (SAME-pooling index math against
 * TensorFlow's padding formula, layer geometry, the memory estimate against
 * NST-SPEC.md's 320 MiB at 512x512, cuDNN's 2^31-element tensor limit, a
 * whole job's estimate, the style pass's memory, the algorithm cache key,
 * and the cuDNN/cuBLAS library search on a fake folder tree) with the host
 * C++ compiler and runs it; likewise graph_test.cc (CUDA
 * graph capture) against the CUDA runtime (it needs a GPU to run) and against
 * the CPU stand-in's runtime.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { emulatedAddonPath } from '@nst/native';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const cxx = process.env.CXX ?? 'g++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
if (!hasCompiler) console.log(`cuda host tests skipped: no C++ compiler (${cxx})`);

const nvcc = process.env.CUDACXX ?? (existsSync('/usr/local/cuda/bin/nvcc') ? '/usr/local/cuda/bin/nvcc' : 'nvcc');
const hasNvcc = spawnSync(nvcc, ['--version']).status === 0;
if (!hasNvcc) console.log(`cuda kernel self-test skipped: no nvcc (${nvcc})`);

const src = (f: string) => path.join(repo, 'native/src', f);

/** Compiles a test program (`args(exe)`: sources and flags) into a temporary folder and runs it. */
function buildAndRun(compiler: string, name: string, args: (exe: string) => string[]) {
  const dir = mkdtempSync(path.join(tmpdir(), `nst-${name}-`));
  try {
    const exe = path.join(dir, name);
    execFileSync(compiler, args(exe), { stdio: 'pipe' });
    return spawnSync(exe, [], { encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** How both host test programs compile: C++17, every warning an error, the engine's sources on the include path. */
const STRICT_CXX = ['-std=c++17', '-O1', '-Wall', '-Wextra', '-Werror', `-I${src('')}`];

describe.skipIf(!hasCompiler)('cuda engine host logic (no GPU needed)', () => {
  it('host_test.cc passes every check', () => {
    const run = buildAndRun(cxx, 'host_test', (exe) => [
      ...STRICT_CXX,
      src('cuda/test/host_test.cc'),
      src('cuda/geometry.cc'),
      src('cuda/memory_plan.cc'),
      src('session_config.cc'),
      src('cuda/library_search.cc'),
      '-ldl',
      '-o',
      exe,
    ]);
    if (run.status !== 0) console.log(run.stdout, run.stderr);
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('cuda host tests: all passed');
    expect(run.status, run.stderr).toBe(0);
  });
});

const cudaHome = path.dirname(path.dirname(nvcc.includes('/') ? nvcc : '/usr/local/cuda/bin/nvcc'));
const hasCudaRuntime =
  existsSync(path.join(cudaHome, 'include/cuda_runtime.h')) && existsSync(path.join(cudaHome, 'lib64/libcudart_static.a'));
if (!hasCudaRuntime) console.log(`cuda graph test skipped: no CUDA runtime under ${cudaHome}`);

/** graph_test.cc linked against a CUDA runtime: the real one (in `libDir`: libcudart_static.a) or the stand-in's. */
function runGraphTest(runtime: { libDir: string; lib: string; rpath?: boolean }) {
  return buildAndRun(cxx, 'graph_test', (exe) => [
    ...STRICT_CXX,
    `-I${path.join(cudaHome, 'include')}`,
    src('cuda/test/graph_test.cc'),
    src('cuda/graph.cc'),
    `-L${runtime.libDir}`,
    `-l${runtime.lib}`,
    ...(runtime.rpath ? [`-Wl,-rpath,${runtime.libDir}`] : []),
    '-ldl',
    '-lpthread',
    '-lrt',
    '-o',
    exe,
  ]);
}

// The stand-in's runtime (npm run build:native:emulated): where graph_test
// runs without a GPU. Under CI its absence is a failure.
const standinLibDir = path.dirname(emulatedAddonPath());
const standinMissing = existsSync(path.join(standinLibDir, 'libnst_cudart_standin.so'))
  ? ''
  : `no libnst_cudart_standin.so in ${standinLibDir} (run: npm run build:native:emulated -w @nst/native)`;
if (standinMissing && hasCompiler && hasCudaRuntime && process.env.CI === 'true') throw new Error(standinMissing);
if (standinMissing) console.log(`cuda graph test on the stand-in skipped: ${standinMissing}`);

describe.skipIf(!hasCompiler || !hasCudaRuntime)('cuda graph capture (native/src/cuda/test/graph_test.cc)', () => {
  it('on the CUDA runtime: a capture replays its work; an exception during capture never leaves the stream capturing', () => {
    const run = runGraphTest({ libDir: path.join(cudaHome, 'lib64'), lib: 'cudart_static' });
    console.log(run.stdout.trim(), run.stderr.trim());
    if (run.status === 3) {
      expect(run.stdout.trim()).toBe('graph_test: no GPU, nothing to test');
    } else {
      expect(run.stdout.trim()).toBe('graph_test: all passed');
      expect(run.status, run.stderr).toBe(0);
    }
  });

  it.skipIf(standinMissing !== '')('on the CPU stand-in: the same checks, run', () => {
    const run = runGraphTest({ libDir: standinLibDir, lib: 'nst_cudart_standin', rpath: true });
    if (run.status !== 0) console.log(run.stdout, run.stderr);
    expect(run.stdout.trim()).toBe('graph_test: all passed');
    expect(run.status, run.stderr).toBe(0);
  });
});

describe.skipIf(!hasNvcc)('cuda kernel self-test (native/src/cuda/test/kernel_test.cu)', () => {
  it('compiles with warnings as errors; on a GPU every kernel matches its CPU reference, else it says there is no GPU', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nst-cuda-kernels-'));
    try {
      const exe = path.join(dir, 'kernel_test');
      execFileSync(
        nvcc,
        [
          '-std=c++17',
          '-O1',
          '-Werror',
          'all-warnings',
          // OpenMP: the kernel families' CPU references are parallel loops.
          '-Xcompiler=-Wall,-Wextra,-Werror,-fopenmp',
          '-arch=sm_80',
          `-I${src('')}`,
          src('cuda/test/kernel_test.cu'),
          src('cuda/kernels.cu'),
          '-lgomp',
          '-o',
          exe,
        ],
        { stdio: 'pipe' },
      );
      const run = spawnSync(exe, [], { encoding: 'utf8' });
      console.log(run.stdout.trim());
      if (run.status === 3) {
        expect(run.stdout.trim()).toBe('kernel_test: no GPU, nothing to test');
      } else {
        expect(run.stdout).toMatch(/kernel_test: all kernels match their CPU references/);
        expect(run.status, run.stderr).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
