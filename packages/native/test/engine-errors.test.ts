/**
 * Engine errors cross the native boundary as data (native/src/napi_errors.h):
 * a code and a field, and for 'too-large' the bytes needed and available.
 * The backend turns them into the user's errors by that data alone: a
 * too-large one into core's one refusal (memoryRefusal) on the field the
 * engine names, another user code as it is; 'internal' and plain errors stay
 * bugs. The real refusals are tested end to end in cuda-memory-emulated.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_LOSS, isUserError, type MemoryShape } from '@nst/core';
import { createNativeBackend, isNativeEngineError } from '@nst/native';
import { userErrorOf } from '../src/backend.js';
import { addon, skipReason } from './helpers.js';

/** An error shaped as the addon throws them. */
function engineError(message: string, data: Record<string, unknown>): Error {
  return Object.assign(new Error(message), data);
}

const shape = (styleSizes: MemoryShape['styleSizes'] = []): MemoryShape => ({
  height: 16384,
  width: 16384,
  pooling: 'avg',
  batch: 1,
  loss: DEFAULT_LOSS,
  styleSizes,
});
// An estimate of 1 KiB per pixel: 400x300 is 117 MiB.
const estimate = (s: MemoryShape) => 1024 * s.height * s.width;

describe('engine errors as user errors, by their data', () => {
  it('too-large: the size refusal is core memoryRefusal, on the field the engine names', () => {
    const session = userErrorOf(
      engineError('cuda: a 16384x16384 batch 1 session needs 431820000000 bytes but 148000000000 bytes are free on X', {
        code: 'too-large',
        field: 'size',
        needed: 431.82e9,
        available: 148e9,
      }),
      'cuda',
      shape(),
      estimate,
    );
    expect(isUserError(session) && session.code === 'too-large' && session.field).toBe('size');
    expect((session as Error).message).toBe(
      'size: 16384x16384 needs about 402.2 GiB on the cuda backend but 137.8 GiB of memory is available; ' +
        'the largest size that fits is about 12022x12022',
    );
    const style = userErrorOf(
      engineError('cuda: style image 16000x12000 needs ...', { code: 'too-large', field: 'styleScale', needed: 4e10, available: 1e10 }),
      'cuda',
      shape([{ height: 12000, width: 16000 }]),
      estimate,
    );
    expect(isUserError(style) && style.code === 'too-large' && style.field).toBe('styleScale');
    expect((style as Error).message).toMatch(/^styleScale: 16384x16384 with style images up to 16000x12000 needs about 37\.3 GiB/);
    // Beyond what the engine can describe at any memory (cuDNN's tensor limit): said so.
    const beyond = userErrorOf(
      engineError('cuda: ...', { code: 'too-large', field: 'size', needed: Number.POSITIVE_INFINITY, available: 1e10 }),
      'cuda',
      shape(),
      (s) => (s.height > 8000 ? Number.POSITIVE_INFINITY : estimate(s)),
    );
    expect((beyond as Error).message).toMatch(/^size: 16384x16384 is beyond what the engine can describe at any memory/);
  });

  it('other user codes keep their message and field; internal errors and plain errors stay bugs', () => {
    const precision = userErrorOf(
      engineError("cuda: precision 'bf16' is not implemented by the cuda engine (it has fp32, tf32)", {
        code: 'unsupported',
        field: 'precision',
      }),
      'cuda',
      shape(),
      estimate,
    );
    expect(isUserError(precision) && [precision.code, precision.field]).toEqual(['unsupported', 'precision']);
    const internal = engineError('cuda: cudaMalloc of activations (123 bytes) failed: out of memory', { code: 'internal' });
    expect(userErrorOf(internal, 'cuda', shape(), estimate)).toBe(internal);
    const plain = new Error('cuda: cudaMalloc failed: out of memory');
    expect(userErrorOf(plain, 'cuda', shape(), estimate)).toBe(plain);
    const argument = new RangeError('createSession: config.height must be in 1..32768, got 0');
    expect(userErrorOf(argument, 'cpu', shape(), estimate)).toBe(argument);
  });
});

describe.skipIf(!addon)(`precisions${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('each engine lists what it implements, and refuses anything else as data', async () => {
    expect(addon!.precisions('cpu')).toEqual(['fp32', 'bf16']);
    expect(addon!.precisions('cuda')).toEqual(['fp32', 'tf32']);
    expect(() => addon!.precisions('tpu' as 'cpu')).toThrow(RangeError);
    // Refused before any device is looked for: the same with or without a GPU, in any build.
    // (cpu bf16 on a processor without it: cpu-bf16.test.ts.)
    for (const [device, precision] of [
      ['cuda', 'bf16'],
      ['cpu', 'tf32'],
    ] as const) {
      let thrown: unknown;
      try {
        addon!.createEngine(device, { precision }).dispose();
      } catch (e) {
        thrown = e;
      }
      expect(isNativeEngineError(thrown) && [thrown.code, thrown.field]).toEqual(['unsupported', 'precision']);
      expect((thrown as Error).message).toBe(
        `${device}: precision '${precision}' is not implemented by the ${device} engine (it has ${addon!.precisions(device).join(', ')})`,
      );
    }
    addon!.createEngine('cpu', { precision: 'fp32' }).dispose();
    await expect(createNativeBackend('cuda', { precision: 'bf16' })).rejects.toMatchObject({
      name: 'UserError',
      code: 'unsupported',
      field: 'precision',
    });
  });
});
