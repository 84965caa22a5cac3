/**
 * The one-time self-check behind `--backend auto` (cuda-check.ts), run on the
 * CPU stand-in: the check runs (kernel self-test, 32x32 parity with the cpu
 * engine) and its verdict is cached; a cached failure keeps the engine out
 * with the reason; and the stand-in itself is never what `auto` opens.
 */
import './use-cuda-emulation.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkedCudaBackend, openCheckedCudaBackend } from '@nst/native';
import { testWeights } from '../../../test/reference/random-weights.js';
import { addon, skipReason } from './helpers.js';

if (!addon && process.env.CI === 'true') throw new Error(`the emulated cuda engine cannot load under CI: ${skipReason}`);

const cacheDir = mkdtempSync(path.join(tmpdir(), 'nst-cuda-check-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));
const options = { cacheDir, precision: 'fp32' as const, checkWeights: () => testWeights(7, 3) };

describe.skipIf(!addon)('the cuda self-check (on the CPU stand-in)', () => {
  it('runs once, passes, and is cached', async () => {
    expect.assertions(3);
    const first = await checkedCudaBackend(options);
    first.backend.dispose();
    expect(first.check).toBe('ran');
    const verdicts = JSON.parse(readFileSync(path.join(cacheDir, 'cuda-self-check.json'), 'utf8')) as Record<string, { ok: boolean }>;
    expect(Object.values(verdicts).map((v) => v.ok)).toEqual([true]);
    const second = await checkedCudaBackend(options);
    second.backend.dispose();
    expect(second.check).toBe('cached');
  });

  it('a cached failure keeps the engine out, saying why', async () => {
    expect.assertions(1);
    const file = path.join(cacheDir, 'cuda-self-check.json');
    const verdicts = JSON.parse(readFileSync(file, 'utf8')) as Record<string, object>;
    for (const key of Object.keys(verdicts)) verdicts[key] = { ok: false, reason: 'kernel self-test exited 1', checkedAt: '' };
    writeFileSync(file, JSON.stringify(verdicts));
    await expect(checkedCudaBackend(options)).rejects.toThrow(/failed its self-check on this GPU \(kernel self-test exited 1/);
  });

  it('--backend auto never opens the engine emulated on the CPU', async () => {
    expect.assertions(1);
    await expect(openCheckedCudaBackend(options)).rejects.toThrow(/NST_CUDA_EMULATION=1\) is used only with --backend cuda/);
  });
});
