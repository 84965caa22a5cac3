import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isUserError, PREPROCESSING, VGG19_LAYERS } from '@nst/core';
import {
  CACHE_FILE_NAME,
  ensureDefaultWeights,
  fetchWeightsDetailed,
  loadWeights,
  WeightsUnreachableError,
  type WeightSource,
} from '@nst/weights';
import { repoRoot } from '@nst/test-helpers';
import { expectSameArray, referenceLayer, tempDir } from './helpers.js';
import { zipPth, type TorchTensor } from './torchfile.js';

/** The file the test server offers: a .pth with conv1_1, conv1_2, conv2_1 (~0.6 MB). */
const layers = [0, 1, 2].map(referenceLayer);
const tensors: TorchTensor[] = layers.flatMap((l, k) => {
  const oihw = new Float32Array(l.kernel.length);
  for (let o = 0; o < l.O; o++)
    for (let i = 0; i < l.I; i++)
      for (let h = 0; h < 3; h++)
        for (let w = 0; w < 3; w++) oihw[((o * l.I + i) * 3 + h) * 3 + w] = l.kernel[((h * 3 + w) * l.I + i) * l.O + o];
  const idx = [0, 2, 5][k];
  return [
    { key: `features.${idx}.weight`, storageKey: `w${k}`, data: oihw, offset: 0, size: [l.O, l.I, 3, 3], stride: [9 * l.I, 9, 3, 1] },
    { key: `features.${idx}.bias`, storageKey: `b${k}`, data: l.bias, offset: 0, size: [l.O], stride: [1] },
  ];
});
const payload = zipPth(tensors);
const sha256 = createHash('sha256').update(payload).digest('hex');
const testSource = (over: Partial<WeightSource> = {}): WeightSource => ({
  id: 'test',
  description: 'test weights',
  fileName: 'vgg-test.pth',
  urls: ['http://127.0.0.1:9/unused'],
  checksum: { algorithm: 'sha256', hex: sha256 },
  megabytes: 1,
  ...over,
});

/** The files the server has, by name (any other name gets a wrong file). */
const served = new Map<string, Buffer>([['vgg-test.pth', payload]]);

/** Behaviour of the next requests, and a log of what the server saw. */
let mode: 'ok' | 'error' | 'cut' = 'ok';
const requests: Array<{ url: string; range?: string }> = [];
let server: Server;
let base: string;
const { path: tmp, cleanup } = tempDir();

function serve(req: IncomingMessage, res: ServerResponse): void {
  requests.push({ url: req.url ?? '', range: req.headers.range });
  if (mode === 'error') {
    res.writeHead(500, 'Internal Server Error').end('boom');
    return;
  }
  const body = served.get(basename(req.url ?? '')) ?? Buffer.from('not the real keras file');
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  const slice = body.subarray(start);
  res.writeHead(m ? 206 : 200, {
    'content-length': slice.length,
    ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
  });
  if (mode === 'cut') {
    // Send 40% of the body, then drop the connection (an interrupted download) once the client has
    // written some of it (polled, at most 10 s: a fixed delay loses the race on a loaded machine).
    const part = join(cacheDirPath, 'downloads', `${basename(req.url ?? '')}.part`);
    const started = Date.now();
    const cutWhenWritten = () => {
      const written = existsSync(part) && statSync(part).size > 0;
      if (written || Date.now() - started > 10_000) res.socket?.destroy();
      else setTimeout(cutWhenWritten, 10);
    };
    res.write(slice.subarray(0, Math.floor(slice.length * 0.4)), cutWhenWritten);
    return;
  }
  res.end(slice);
}

beforeAll(async () => {
  server = createServer(serve);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/files`;
  process.env.NST_WEIGHTS_MIRROR = base;
});
afterAll(() => {
  server.close();
  cleanup();
});
let cacheDirPath: string;
let n = 0;
beforeEach(() => {
  mode = 'ok';
  requests.length = 0;
  cacheDirPath = join(tmp, `cache${n++}`);
  process.env.NST_CACHE_DIR = cacheDirPath;
  delete process.env.NST_WEIGHTS;
});
const quiet = { log: () => undefined, progress: false };

async function expectCachedReference(path: string) {
  expect(path).toBe(join(cacheDirPath, CACHE_FILE_NAME));
  const set = await loadWeights(path);
  expect(set.layers.map((l) => l.name)).toEqual(['conv1_1', 'conv1_2', 'conv2_1']);
  set.layers.forEach((l, k) => expectSameArray(l.kernel, layers[k].kernel, l.name));
  expect(set.sha256).toBe(sha256);
  // The cache records where the weights came from.
  const header = readFileSync(path)
    .subarray(8, 8 + Number(readFileSync(path).readBigUInt64LE(0)))
    .toString('utf8');
  expect(JSON.parse(header).__metadata__.source).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/files\/vgg-test\.pth$/);
}

describe('nst weights fetch against a local server', () => {
  it('downloads, verifies the checksum, converts to the cache and removes the original', async () => {
    const result = await fetchWeightsDetailed({ sources: [testSource()], ...quiet });
    expect(requests).toEqual([{ url: '/files/vgg-test.pth', range: undefined }]);
    await expectCachedReference(result.cachePath);
    expect(result.stored).toEqual(['conv1_1', 'conv1_2', 'conv2_1']);
    expect(existsSync(join(cacheDirPath, 'downloads', 'vgg-test.pth'))).toBe(false);
    expect(existsSync(join(cacheDirPath, 'downloads', 'vgg-test.pth.part'))).toBe(false);
  });

  it('resumes an interrupted download with an HTTP Range request', async () => {
    mode = 'cut';
    const err = await fetchWeightsDetailed({ sources: [testSource()], ...quiet }).catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    const part = join(cacheDirPath, 'downloads', 'vgg-test.pth.part');
    const partial = statSync(part).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(payload.length);
    mode = 'ok';
    requests.length = 0;
    const result = await fetchWeightsDetailed({ sources: [testSource()], ...quiet });
    expect(requests).toEqual([{ url: '/files/vgg-test.pth', range: `bytes=${partial}-` }]);
    await expectCachedReference(result.cachePath);
  });

  it('rejects a checksum mismatch (the real keras source, served a wrong file) and deletes the bad download', async () => {
    const err = await fetchWeightsDetailed({ source: 'keras', ...quiet }).catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toMatch(/checksum mismatch: md5 [0-9a-f]{32}, published 253f8cb515780f3b799900260a226db6/);
    // ...and says exactly what to download by hand and how to import it.
    expect(msg).toContain(
      'download vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (80 MB, md5 253f8cb515780f3b799900260a226db6) by hand from https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    );
    expect(msg).toContain('nst weights import vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5');
    expect(msg).not.toContain('\n');
    expect(existsSync(join(cacheDirPath, 'downloads', 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5.part'))).toBe(false);
  });

  it('reports a server error for every source in one line', async () => {
    mode = 'error';
    const sources = [testSource(), testSource({ id: 'other', fileName: 'other.pth' })];
    const err = await fetchWeightsDetailed({ sources, fallback: true, ...quiet }).catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain(`${base}/vgg-test.pth: HTTP 500`);
    expect(msg).toContain(`${base}/other.pth: HTTP 500`);
    expect(msg).not.toContain('\n');
    expect(existsSync(join(cacheDirPath, CACHE_FILE_NAME))).toBe(false);
  });

  it('goes on to the next (larger) source only with consent: --fallback or a yes', async () => {
    const bad = testSource({ id: 'bad', fileName: 'bad.pth', checksum: { algorithm: 'sha256', hex: '00'.repeat(32) } });
    const sources = [bad, testSource({ megabytes: 575 })];
    // No consent: it stops after the first, naming both ways on.
    const stopped = await fetchWeightsDetailed({ sources, ...quiet }).catch((e: unknown) => e);
    expect(isUserError(stopped)).toBe(true);
    expect((stopped as Error).message).toBe(
      'weights fetch: bad failed; the other sources are larger (test: 575 MB): run `nst weights fetch --source test`, or add --fallback to try each in turn',
    );
    expect(requests.map((r) => r.url)).toEqual(['/files/bad.pth']);
    // Asked, and no: the same; asked, and yes: the next source.
    const questions: string[] = [];
    const no = await fetchWeightsDetailed({ sources, ask: async (q) => (questions.push(q), false), ...quiet }).catch((e: unknown) => e);
    expect((no as Error).message).toMatch(/^weights fetch: bad failed/);
    expect(questions).toEqual(['bad failed. Download test weights (575 MB) instead? [y/N] ']);
    expect((await fetchWeightsDetailed({ sources, ask: async () => true, ...quiet })).source.id).toBe('test');
    process.env.NST_CACHE_DIR = cacheDirPath = join(tmp, 'cache-fallback');
    const result = await fetchWeightsDetailed({ sources, fallback: true, ...quiet });
    expect(result.source.id).toBe('test');
    await expectCachedReference(result.cachePath);
  });

  it('installs the Keras 1 release layout under its real name from a source with its checksum', async () => {
    const fixture = join(repoRoot, 'test', 'fixtures', 'keras1-vgg19-notop.h5.fixture');
    const bytes = readFileSync(fixture);
    const fileName = 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5';
    served.set(fileName, bytes);
    const keras = testSource({ id: 'keras', fileName, checksum: { algorithm: 'md5', hex: createHash('md5').update(bytes).digest('hex') } });
    const result = await fetchWeightsDetailed({ sources: [keras], ...quiet });
    expect(requests).toEqual([{ url: `/files/${fileName}`, range: undefined }]);
    expect(result.stored).toEqual(VGG19_LAYERS.slice(0, 13).map((l) => l.name));
    const cached = await loadWeights(result.cachePath);
    const original = await loadWeights(fixture);
    expect(cached.preprocessing).toEqual(PREPROCESSING.caffeBgr);
    cached.layers.forEach((l, k) => {
      expectSameArray(l.kernel, original.layers[k].kernel, `${l.name} kernel`);
      expectSameArray(l.bias, original.layers[k].bias, `${l.name} bias`);
    });
  });

  it('says when a verified file does not convert, keeps it, moves on, and converts it on a re-run without downloading it', async () => {
    const junk = Buffer.from('the published bytes, but not a weight file nst can read');
    served.set('broken.h5', junk);
    const broken = testSource({
      id: 'broken',
      fileName: 'broken.h5',
      checksum: { algorithm: 'md5', hex: createHash('md5').update(junk).digest('hex') },
    });
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);
    const result = await fetchWeightsDetailed({ sources: [broken, testSource()], fallback: true, log, progress: false });
    expect(result.source.id).toBe('test');
    await expectCachedReference(result.cachePath);
    const kept = join(cacheDirPath, 'downloads', 'broken.h5');
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^weights: broken\.h5 is the published file \(checksum verified\) but does not convert: .*not a recognised VGG-19 weight file.*; kept in /,
      ),
    );
    expect(readFileSync(kept)).toEqual(junk);
    // The next run reads the kept file instead of downloading it (and, as it still does not convert, goes on).
    requests.length = 0;
    lines.length = 0;
    await fetchWeightsDetailed({ sources: [broken, testSource()], fallback: true, log, progress: false });
    expect(requests.map((r) => r.url)).toEqual(['/files/vgg-test.pth']);
    expect(lines[0]).toBe(`weights: ${kept} was downloaded and verified before: converting it`);
  });

  it('with no server to reach, stops at once: one line, then where to get the file by hand and how to install it', async () => {
    // A loopback port with nothing listening: connections are refused before any answer.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    process.env.NST_WEIGHTS_MIRROR = `http://127.0.0.1:${port}`;
    const lines: string[] = [];
    try {
      const sources = [testSource(), testSource({ id: 'other', fileName: 'other.pth', megabytes: 575 })];
      const err = await fetchWeightsDetailed({ sources, fallback: true, log: (l) => lines.push(l), progress: false }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WeightsUnreachableError);
      const e = err as WeightsUnreachableError;
      expect(e.lines).toEqual([
        `weights fetch: 127.0.0.1:${port} cannot be reached (ECONNREFUSED)`,
        `download vgg-test.pth (1 MB, sha256 ${sha256}) by hand from http://127.0.0.1:9/unused,`,
        'then install it: nst weights import vgg-test.pth',
      ]);
      expect(e.message).not.toContain('\n');
      expect(e.message).toContain('then run `nst weights import vgg-test.pth`');
      // Nothing was logged per URL, and the larger source was not tried.
      expect(lines).toEqual([]);
      expect(requests).toEqual([]);
    } finally {
      process.env.NST_WEIGHTS_MIRROR = base;
    }
  });

  it('render without weights: asks, fetches with --yes, else explains how to get weights', async () => {
    const noTty = await ensureDefaultWeights({ ask: async () => false }).catch((e: unknown) => e);
    expect(isUserError(noTty)).toBe(true);
    expect((noTty as Error).message).toMatch(/run `nst weights fetch`/);
    expect(requests).toEqual([]);
    const fetch = { sources: [testSource()], ...quiet };
    const questions: string[] = [];
    const yes = await ensureDefaultWeights({ ask: async (q) => (questions.push(q), true), fetch });
    expect(questions[0]).toMatch(/^No VGG-19 weights in .*Download test weights \(1 MB\) now\? \[Y\/n\] $/);
    await expectCachedReference(yes);
    // Now the cache holds weights: they are used without asking or downloading.
    requests.length = 0;
    expect(
      await ensureDefaultWeights({
        ask: async () => {
          throw new Error('asked');
        },
      }),
    ).toBe(yes);
    expect(requests).toEqual([]);
    // --yes downloads without asking.
    process.env.NST_CACHE_DIR = cacheDirPath = join(tmp, 'cache-yes');
    await expectCachedReference(
      await ensureDefaultWeights({
        yes: true,
        ask: async () => {
          throw new Error('asked');
        },
        fetch,
      }),
    );
    process.env.NST_WEIGHTS = 'random:3';
    expect(await ensureDefaultWeights()).toBe('random:3');
  });
});
