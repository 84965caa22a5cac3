/**
 * The addon's JS surface under misuse: wrong types, wrong buffer sizes,
 * disposed handles and calls while a job runs must throw JS errors (never
 * crash); long calls must not block the event loop; optimiser state must
 * round-trip. Uses a few random layers at tiny sizes to stay fast.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADAM, adamStepSizes } from '@nst/core';
import {
  explainLoadError,
  loadAddonFrom,
  loadNativeAddon,
  nativePrecisions,
  type NativeEngine,
  type NativeSessionConfig,
} from '@nst/native';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { BLOCKS_1_2_LOSS, addon, relL2, skipReason } from './helpers.js';

const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const config: NativeSessionConfig = {
  height: 10,
  width: 12,
  batch: 1,
  pooling: 'avg',
  loss: BLOCKS_1_2_LOSS,
};
const pixels = 10 * 12 * 3;
const targets = [
  {
    content: { height: 10, width: 12, data: testImage(1, pixels) },
    styles: [{ image: { height: 9, width: 7, data: testImage(2, 9 * 7 * 3) }, weight: 1 }],
  },
];

function engineWithWeights(): NativeEngine {
  const engine = addon!.createEngine('cpu');
  engine.setWeights(testWeights(3, 4).layers);
  return engine;
}

async function readySession(engine = engineWithWeights(), c = config) {
  const session = engine.createSession(c);
  await session.setTargets(targets);
  session.setImages(testImage(4, c.batch * c.height * c.width * 3));
  return session;
}

describe('loader', () => {
  it('loads the addon once per process: every caller gets the same result', () => {
    expect(loadNativeAddon()).toBe(loadNativeAddon());
    // The precisions a front end offers come from that one load; none when it failed.
    expect(nativePrecisions('cuda')).toEqual(addon ? ['fp32', 'tf32'] : []);
  });

  it('says in one line why the addon is unavailable', () => {
    const missing = loadAddonFrom('/nonexistent/nst_native.node');
    expect(missing).toEqual({ ok: false, reason: expect.stringMatching(/^native addon not built \(.*npm run build:native/) });
    const garbage = loadAddonFrom(new URL('./helpers.ts', import.meta.url).pathname);
    expect(garbage.ok).toBe(false);
    expect(explainLoadError('libdnnl.so.2: cannot open shared object file: No such file or directory', 'x')).toMatch(
      /oneDNN library missing \(libdnnl\.so\.2; install/,
    );
    expect(
      explainLoadError("The module 'x.node' was compiled against a different Node.js version using\nNODE_MODULE_VERSION 108.", 'x'),
    ).toMatch(/^native addon built for another Node ABI or platform \(The module/);
  });
});

describe.skipIf(!addon)(`native addon misuse${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('createEngine and setWeights validate their arguments', () => {
    expect(() => addon!.createEngine('tpu' as 'cpu')).toThrow(RangeError);
    expect(() => addon!.createEngine(5 as unknown as 'cpu')).toThrow(TypeError);
    if (!addon!.cudaCompiled) expect(() => addon!.createEngine('cuda')).toThrow(/this build has no CUDA support/);
    const engine = addon!.createEngine('cpu');
    // What runs: the instruction set of the convolutions and the precision (fp32 unless asked).
    expect(engine.describe()).toMatch(
      /^cpu \(oneDNN 2\.\d+\.\d+, \d+ threads, (AMX|AVX512-BF16|AVX-512|AVX2|AVX|SSE4\.1|reference) fp32\)$/,
    );
    expect(() => engine.createSession(config)).toThrow(/call setWeights first/);
    const layers = testWeights(3, 2).layers;
    expect(() => engine.setWeights('x' as never)).toThrow(TypeError);
    expect(() => engine.setWeights([])).toThrow(/1 to 16 conv layers/);
    expect(() => engine.setWeights([layers[1]])).toThrow(/conv1_1\) must have 3->64 channels, got 64->64/);
    expect(() => engine.setWeights([{ ...layers[0], kernel: layers[0].kernel.subarray(1) }])).toThrow(
      /kernel must hold 1728 values, got 1727/,
    );
    expect(() => engine.setWeights([{ ...layers[0], bias: new Float64Array(64) as never }])).toThrow(/bias must be a Float32Array/);
    expect(() => engine.setWeights([{ ...layers[0], inChannels: 2.5 }])).toThrow(/inChannels must be an integer/);
    engine.dispose();
  });

  it('createSession validates the config', () => {
    const engine = engineWithWeights();
    const bad: [unknown, RegExp][] = [
      [undefined, /config must be an object/],
      [{ ...config, height: 0 }, /config\.height must be in 1\.\.32768, got 0/],
      [{ ...config, batch: 1025 }, /config\.batch must be in 1\.\.1024, got 1025/],
      [{ ...config, width: 3.5 }, /config\.width must be a 32-bit integer, got 3\.5/],
      [{ ...config, batch: '1' }, /batch must be a number/],
      [{ ...config, pooling: 'min' }, /pooling must be 'avg' or 'max'/],
      [
        { ...config, loss: { content: [{ convIndex: 4, weight: 1 }], style: [] } },
        /config\.loss\.content\[0\]: conv layer 4 is outside the 4 layers of the weights/,
      ],
      [{ ...config, loss: { content: [{ convIndex: 1.5, weight: 1 }], style: [] } }, /convIndex must be a 32-bit integer, got 1\.5/],
      [{ ...config, loss: { content: [], style: [] } }, /at least one content or style layer/],
      [{ ...config, loss: { content: [{ convIndex: 1, weight: -1 }], style: [] } }, /content\[0\]: weight must be finite and >= 0/],
      [{ ...config, loss: { ...config.loss, alpha: Number.NaN } }, /alpha must be finite/],
    ];
    for (const [c, message] of bad) expect(() => engine.createSession(c as NativeSessionConfig)).toThrow(message);
    engine.dispose();
  });

  // The engines disagreed on a repeated layer (cpu summed the terms, cuda
  // kept the last), so the one validation refuses it for both.
  it('createSession refuses a content or style layer listed twice', () => {
    const engine = engineWithWeights();
    const twice = (content: number[], style: number[]) => ({
      ...config,
      loss: {
        content: content.map((convIndex) => ({ convIndex, weight: 1 })),
        style: style.map((convIndex) => ({ convIndex, weight: 1 })),
      },
    });
    expect(() => engine.createSession(twice([3, 1, 3], [0]))).toThrow(RangeError);
    expect(() => engine.createSession(twice([3, 1, 3], [0]))).toThrow(
      /^createSession: config\.loss\.content\[2\]: conv layer 3 \(conv2_2\) is listed twice \(also at content\[0\]\)$/,
    );
    expect(() => engine.createSession(twice([3], [2, 2]))).toThrow(/config\.loss\.style\[1\]: conv layer 2 \(conv2_1\) is listed twice/);
    // The same layer in both lists is two different terms: allowed.
    engine.createSession(twice([2], [2])).dispose();
    engine.dispose();
  });

  it('session calls validate buffers, and calls before setTargets/setImages reject', async () => {
    const engine = engineWithWeights();
    const session = engine.createSession(config);
    await expect(session.iterate(adam, new Float32Array(1))).rejects.toThrow(/call setTargets first/);
    expect(() => session.setTargets([])).toThrow(/expected 1 targets/);
    expect(() => session.setTargets([{ ...targets[0], content: { height: 10, width: 11, data: new Float32Array(330) } }])).toThrow(
      /content must be 10x12/,
    );
    expect(() => session.setTargets([{ ...targets[0], content: { height: 10, width: 12, data: new Float32Array(5) } }])).toThrow(
      /content\.data must hold 360 values, got 5/,
    );
    expect(() => session.setTargets([{ ...targets[0], styles: [] }])).toThrow(/at least one style image/);
    expect(() => session.setTargets([{ ...targets[0], styles: [{ ...targets[0].styles[0], weight: -1 }] }])).toThrow(/weight must be >= 0/);
    await session.setTargets(targets);
    await expect(session.lossAndGradient()).rejects.toThrow(/call setImages first/);
    expect(() => session.setImages(new Float32Array(pixels + 1))).toThrow(/must hold 360 values, got 361/);
    expect(() => session.setImages(new Uint8Array(pixels) as never)).toThrow(TypeError);
    session.setImages(testImage(4, pixels));
    expect(() => session.iterate(adam, [1, 2] as never)).toThrow(/stepSizes must be a Float32Array/);
    expect(() => session.iterate({ beta1: 0.9 } as never, new Float32Array(1))).toThrow(/adam\.beta2 must be a number/);
    expect(() => session.iterate(adam, Float32Array.of(Number.NaN))).toThrow(/stepSizes must be finite/);
    expect(() => session.iterate(adam, new Float32Array(1), 3 as never)).toThrow(/onProgress must be a function/);
    expect(() => session.writeOptimizerState(new Float32Array(pixels), new Float32Array(3))).toThrow(/v must hold 360 values/);
    expect((await session.iterate(adam, new Float32Array(0)))[0].total).toBeGreaterThan(0);
    engine.dispose();
  });

  it('disposed handles throw, dispose is idempotent, engine dispose disables its sessions', async () => {
    const engine = engineWithWeights();
    const session = await readySession(engine);
    const other = await readySession(engine);
    session.dispose();
    session.dispose();
    expect(() => session.setImages(new Float32Array(pixels))).toThrow(/session has been disposed/);
    expect(() => session.readImages()).toThrow(/session has been disposed/);
    expect(() => session.lossAndGradient()).toThrow(/session has been disposed/);
    engine.dispose();
    engine.dispose();
    expect(() => other.readOptimizerState()).toThrow(/engine has been disposed/);
    expect(() => engine.createSession(config)).toThrow(/engine has been disposed/);
    expect(() => engine.setWeights(testWeights(3, 1).layers)).toThrow(/engine has been disposed/);
  });

  it('a running job makes other calls throw "busy" (not the memory queries); dispose during a job is safe', async () => {
    const engine = engineWithWeights();
    const session = await readySession(engine);
    const idle = engine.estimateMemory({ ...config, styleSizes: [{ height: 9, width: 7 }] });
    const running = session.iterate(adam, adamStepSizes(DEFAULT_ADAM, 1, 5));
    expect(() => session.readImages()).toThrow(/busy/);
    expect(() => engine.createSession(config)).toThrow(/busy/);
    // They read nothing the job changes: the same answer while it runs.
    expect(engine.estimateMemory({ ...config, styleSizes: [{ height: 9, width: 7 }] })).toBe(idle);
    expect(engine.deviceMemoryAvailable()).toBeUndefined();
    session.dispose();
    engine.dispose();
    const losses = await running;
    expect(losses[0].total).toBeGreaterThan(0);
  });

  it('iterate runs off the event loop and reports progress; a throwing callback does not abort it', async () => {
    const engine = engineWithWeights();
    const big = { ...config, height: 96, width: 128, loss: { ...config.loss, content: [] } };
    const session = engine.createSession(big);
    await session.setTargets([{ content: { height: 96, width: 128, data: testImage(5, 96 * 128 * 3) }, styles: targets[0].styles }]);
    session.setImages(testImage(6, 96 * 128 * 3));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 2);
    const progress: number[] = [];
    const start = performance.now();
    await session.iterate(adam, adamStepSizes(DEFAULT_ADAM, 1, 8), (done) => {
      progress.push(done);
      throw new Error('callback bug');
    });
    const elapsed = performance.now() - start;
    clearInterval(timer);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe(8);
    // The timer kept firing while C++ worked: a blocked loop would fire it at
    // most once, after the call (lenient, as the two cores are busy with it).
    expect(elapsed).toBeGreaterThan(20);
    expect(ticks).toBeGreaterThanOrEqual(3);
    engine.dispose();
  });

  it('optimizer state round-trips: resuming from saved images and moments reproduces the run', async () => {
    const engine = engineWithWeights();
    const steps = adamStepSizes(DEFAULT_ADAM, 1, 6);
    const a = await readySession(engine);
    await a.iterate(adam, steps.subarray(0, 3));
    const images = a.readImages();
    const { m, v } = a.readOptimizerState();
    await a.iterate(adam, steps.subarray(3));
    const b = await readySession(engine);
    b.setImages(images);
    b.writeOptimizerState(m, v);
    await b.iterate(adam, steps.subarray(3));
    expect(relL2(b.readImages(), a.readImages())).toBeLessThan(1e-7);
    expect(relL2(b.readOptimizerState().v, a.readOptimizerState().v)).toBeLessThan(1e-7);
    // and setImages zeroes the moments
    b.setImages(images);
    expect(b.readOptimizerState().m.every((x) => x === 0)).toBe(true);
    engine.dispose();
  });
});
