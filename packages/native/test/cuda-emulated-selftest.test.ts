/**
 * The CPU stand-in's C++ executables (native/build-emulated, built by npm ci):
 * the kernel self-test (every kernel family of native/src/kernels against its
 * CPU reference), the cuda engine's memory estimate against the bytes it
 * really allocates (native/emulation/test/memory_plan_test.cc), and the
 * stand-in's strictness test (each mistake a GPU punishes is reported).
 * Without the emulated build they skip, saying why; under CI they fail.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { emulatedAddonPath } from '@nst/native';

const buildDir = path.dirname(path.dirname(emulatedAddonPath())); // native/build-emulated
const libDir = path.dirname(emulatedAddonPath());
const missing = ['nst_kernel_test', 'nst_memory_plan_test', 'nst_standin_test'].filter((name) => !existsSync(path.join(buildDir, name)));
const reason =
  missing.length > 0
    ? `emulated build missing ${missing.join(', ')} in ${buildDir} (run: npm run build:native:emulated -w @nst/native)`
    : '';
if (reason && process.env.CI === 'true') throw new Error(reason);
if (reason) console.log(`stand-in self-tests skipped: ${reason}`);

function run(name: string): { status: number | null; output: string } {
  const result = spawnSync(path.join(buildDir, name), [], {
    encoding: 'utf8',
    timeout: 100_000,
    env: {
      ...process.env,
      NST_CUBLAS_PATH: path.join(libDir, 'libcublas_standin.so'),
      NST_CUDNN_PATH: path.join(libDir, 'libcudnn_standin.so'),
    },
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  console.log(output);
  return { status: result.status, output };
}

describe.skipIf(reason !== '')('the CPU stand-in for the CUDA platform', () => {
  it('kernel self-test: every kernel matches its CPU twin (odd, 1-wide and grid-stride sizes, 32- and 64-bit indices)', () => {
    expect.assertions(3);
    const { status, output } = run('nst_kernel_test');
    expect(output).toMatch(/all kernels match their CPU references/);
    expect(output).not.toMatch(/FAIL/);
    expect(status).toBe(0);
  });

  it('memory plan: the cuda estimate covers the peak the engine allocates, by its reserves only', () => {
    expect.assertions(4);
    const { status, output } = run('nst_memory_plan_test');
    expect(output).toMatch(/every estimate covers what the engine allocated, by its reserves only/);
    // One line per case (the fourth: a temporal term, for video).
    expect(output.match(/ estimate \d+ bytes, allocated peak \d+ bytes/g)?.length).toBe(4);
    expect(output).not.toMatch(/FAIL/);
    expect(status).toBe(0);
  });

  it('strictness: every mistake a GPU punishes is reported by the stand-in', () => {
    expect.assertions(4);
    const { status, output } = run('nst_standin_test');
    expect(output).toMatch(/every check fires/);
    // One line per check, each ok: a check dropped from the list shows here.
    expect(output.match(/ ok$/gm)?.length).toBe(19);
    // One line per check, each ok (the count guards against a check silently dropped).
    expect(output.match(/ ok$/gm)?.length).toBeGreaterThanOrEqual(17);
    expect(status).toBe(0);
  });
});
