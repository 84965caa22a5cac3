/**
 * `nst weights fetch`: downloads a canonical VGG-19 file, verifies it against
 * its published checksum, converts it to the cache and deletes the original.
 * Downloads go to <cache>/downloads/<file>.part and resume with an HTTP Range
 * request after an interruption; only a verified file is renamed into place.
 * NST_WEIGHTS_MIRROR=<base URL> replaces every source's URLs by
 * <base>/<file name> (a local mirror, or the tests' local server).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { UserError, type WeightSet } from '@nst/core';
import { cacheDir, cacheDirVariable, cachedLayers, cachePath, ensureCacheFolder, resolveDefaultWeights, writeCache } from './cache.js';
import { loadWeights } from './load.js';

export interface WeightSource {
  /** keras | matconvnet | caffe-pth | torchvision */
  readonly id: string;
  readonly description: string;
  readonly fileName: string;
  /** Canonical URL first, then known mirrors. */
  readonly urls: readonly string[];
  /** The published checksum; `prefix` when only its first hex digits are published (torchvision's file names). */
  readonly checksum: { readonly algorithm: 'md5' | 'sha256'; readonly hex: string; readonly prefix?: boolean };
  /** Approximate size, for the prompt. */
  readonly megabytes: number;
}

export const WEIGHT_SOURCES: readonly WeightSource[] = [
  {
    id: 'keras',
    description: 'Keras VGG-19 without the classifier (Caffe weights, BGR)',
    fileName: 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    urls: [
      'https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
      'https://github.com/fchollet/deep-learning-models/releases/download/v0.1/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    ],
    // keras/applications/vgg19.py: file_hash for WEIGHTS_PATH_NO_TOP
    checksum: { algorithm: 'md5', hex: '253f8cb515780f3b799900260a226db6' },
    megabytes: 80,
  },
  {
    id: 'matconvnet',
    description: "MatConvNet imagenet-vgg-verydeep-19 (the notebook's file, RGB)",
    fileName: 'imagenet-vgg-verydeep-19.mat',
    urls: ['https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat'],
    checksum: { algorithm: 'md5', hex: '106118b7cf60435e6d8e04f6a6dc3657' },
    megabytes: 510,
  },
  {
    id: 'caffe-pth',
    description: 'Caffe VGG-19 converted to PyTorch (neural-style-pt, BGR)',
    fileName: 'vgg19-d01eb7cb.pth',
    urls: [
      'https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth',
      'https://s3-us-west-2.amazonaws.com/jcjohns-models/vgg19-d01eb7cb.pth',
    ],
    checksum: { algorithm: 'sha256', hex: 'd01eb7cb', prefix: true },
    megabytes: 548,
  },
  {
    id: 'torchvision',
    description: "torchvision's VGG-19 (RGB, ImageNet mean/std; weaker stylisation)",
    fileName: 'vgg19-dcbb9e9d.pth',
    urls: ['https://download.pytorch.org/models/vgg19-dcbb9e9d.pth'],
    checksum: { algorithm: 'sha256', hex: 'dcbb9e9d', prefix: true },
    megabytes: 548,
  },
];

export interface FetchOptions {
  /** One source id; default: each in WEIGHT_SOURCES order until one succeeds. */
  readonly source?: string;
  /** Replaces WEIGHT_SOURCES (tests). */
  readonly sources?: readonly WeightSource[];
  /** Progress bar on stderr (default: when stderr is a TTY). */
  readonly progress?: boolean;
  /** Keep the downloaded original beside the cache (default: delete it after conversion). */
  readonly keep?: boolean;
  readonly log?: (line: string) => void;
  /** Seconds without any data before a download is abandoned (default 60). */
  readonly idleTimeoutSeconds?: number;
}

export interface FetchResult {
  readonly cachePath: string;
  readonly source: WeightSource;
  readonly set: WeightSet;
  /** The layers the cache holds now (the set's up to conv5_1). */
  readonly stored: readonly string[];
}

export function findSource(id: string, sources: readonly WeightSource[] = WEIGHT_SOURCES): WeightSource {
  const s = sources.find((x) => x.id === id);
  if (!s) throw new UserError(`--source ${id}: unknown source (choose one of ${sources.map((x) => x.id).join(', ')})`);
  return s;
}

/** The URLs to try for `source`: NST_WEIGHTS_MIRROR/<file> when that is set, else the source's own. */
export function sourceUrls(source: WeightSource): string[] {
  const mirror = process.env.NST_WEIGHTS_MIRROR;
  return mirror ? [`${mirror.replace(/\/+$/, '')}/${source.fileName}`] : [...source.urls];
}

/** Downloads, verifies and converts (see fetchWeightsDetailed); returns the cache file's path. */
export async function fetchWeights(options: FetchOptions = {}): Promise<string> {
  return (await fetchWeightsDetailed(options)).cachePath;
}

export async function fetchWeightsDetailed(options: FetchOptions = {}): Promise<FetchResult> {
  const all = options.sources ?? WEIGHT_SOURCES;
  const candidates = options.source ? [findSource(options.source, all)] : all;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const failures: string[] = [];
  for (const source of candidates) {
    for (const url of sourceUrls(source)) {
      let file: string;
      try {
        file = await downloadVerified(source, url, options, log);
      } catch (e) {
        const reason = (e as Error).message;
        failures.push(`${url}: ${reason}`);
        log(`weights: ${url} failed: ${reason}`);
        continue;
      }
      // A verified file that does not load is a real problem, not a reason to try another source.
      return convert(source, url, file, options, log);
    }
  }
  const first = candidates[0];
  throw new UserError(
    `could not download VGG-19 weights (${failures.join('; ')}). ` +
      `Download ${first.urls[0]} by hand (${first.checksum.algorithm} ${first.checksum.hex}${first.checksum.prefix ? '...' : ''}) ` +
      `and run \`nst weights import ${first.fileName}\`, which stores it in ${cachePath()}`,
  );
}

async function convert(
  source: WeightSource,
  url: string,
  file: string,
  options: FetchOptions,
  log: (l: string) => void,
): Promise<FetchResult> {
  const set = await loadWeights(file);
  const path = await writeCache({ ...set, source: url });
  if (!options.keep) await unlink(file).catch(() => undefined);
  const stored = cachedLayers(set).map((l) => l.name);
  log(`weights: ${source.id} -> ${path} (${stored.length} layers stored, ${set.preprocessing.name})`);
  return { cachePath: path, source, set, stored };
}

/** Downloads (resuming a .part file) and verifies; returns the verified file's path. */
async function downloadVerified(source: WeightSource, url: string, options: FetchOptions, log: (l: string) => void): Promise<string> {
  const dir = join(cacheDir(), 'downloads');
  await ensureCacheFolder(dir, cacheDirVariable());
  const final = join(dir, source.fileName);
  const part = `${final}.part`;
  await download(url, part, options, log);
  const digest = await hashFile(part, source.checksum.algorithm);
  const { hex, prefix } = source.checksum;
  if (prefix ? !digest.startsWith(hex) : digest !== hex) {
    await unlink(part).catch(() => undefined); // a bad file must not be resumed
    throw new Error(`checksum mismatch: ${source.checksum.algorithm} ${digest}, published ${hex}${prefix ? '...' : ''}`);
  }
  await rename(part, final);
  return final;
}

async function download(url: string, part: string, options: FetchOptions, log: (l: string) => void): Promise<void> {
  const have = existsSync(part) ? statSync(part).size : 0;
  const controller = new AbortController();
  const idleMs = (options.idleTimeoutSeconds ?? 60) * 1000;
  let idle = setTimeout(() => controller.abort(), idleMs);
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => controller.abort(), idleMs);
  };
  try {
    const res = await fetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, signal: controller.signal, redirect: 'follow' });
    if (res.status === 416 && have > 0) return; // the .part is already complete
    const resumed = res.status === 206 && have > 0 && (res.headers.get('content-range') ?? '').startsWith(`bytes ${have}-`);
    if (!res.ok || (res.status === 206 && !resumed)) throw new Error(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
    if (!res.body) throw new Error('empty response');
    const start = resumed ? have : 0;
    const length = Number(res.headers.get('content-length') ?? NaN);
    const total = Number.isFinite(length) ? start + length : undefined;
    log(`weights: ${resumed ? `resuming at ${mb(start)} MB` : 'downloading'} ${url}${total ? ` (${mb(total)} MB)` : ''}`);
    const bar = new Progress(options.progress ?? process.stderr.isTTY === true, total, start);
    let received = start;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        touch();
        bar.update(received);
        done(null, chunk);
      },
    });
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
      counter,
      createWriteStream(part, { flags: resumed ? 'a' : 'w' }),
    );
    bar.done();
    if (total !== undefined && received !== total) throw new Error(`connection closed after ${received} of ${total} bytes`);
  } catch (e) {
    if (controller.signal.aborted) throw new Error(`no data for ${idleMs / 1000} s`);
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(cause?.code ?? cause?.message ?? (e as Error).message);
  } finally {
    clearTimeout(idle);
  }
}

async function hashFile(path: string, algorithm: 'md5' | 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/** A one-line progress bar on stderr, redrawn at most 10 times a second. */
class Progress {
  private last = 0;
  private readonly t0 = performance.now();
  constructor(
    private readonly enabled: boolean,
    private readonly total: number | undefined,
    private readonly start: number,
  ) {}

  update(received: number): void {
    const now = performance.now();
    if (!this.enabled || now - this.last < 100) return;
    this.last = now;
    const rate = (received - this.start) / Math.max((now - this.t0) / 1000, 1e-3);
    const frac = this.total ? received / this.total : 0;
    const width = 30;
    const bar = this.total ? `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ${(frac * 100).toFixed(0).padStart(3)}% ` : '';
    const eta = this.total && rate > 0 ? ` ETA ${Math.ceil((this.total - received) / rate)} s` : '';
    process.stderr.write(`\r${bar}${mb(received)}${this.total ? `/${mb(this.total)}` : ''} MB ${mb(rate)} MB/s${eta}   `);
  }

  done(): void {
    if (this.enabled) process.stderr.write('\n');
  }
}

export interface EnsureOptions {
  /** Fetch without asking (`--yes`). */
  readonly yes?: boolean;
  /** Asks the user; default: a [Y/n] prompt on the terminal when stdin and stderr are TTYs. */
  readonly ask?: (question: string) => Promise<boolean>;
  readonly log?: (line: string) => void;
  /** Passed on to fetchWeights (tests: other sources). */
  readonly fetch?: FetchOptions;
}

/**
 * The weights `nst render` uses without --weights: NST_WEIGHTS, else the
 * cache, else a download of the default source, after asking on a terminal
 * or with `yes`; otherwise a UserError saying how to get weights.
 */
export async function ensureDefaultWeights(options: EnsureOptions = {}): Promise<string> {
  const existing = await resolveDefaultWeights();
  if (existing) return existing;
  const source = options.fetch?.sources?.[0] ?? WEIGHT_SOURCES[0];
  const interactive = process.stdin.isTTY === true && process.stderr.isTTY === true;
  const ask = options.ask ?? (interactive ? askOnTerminal : undefined);
  let go = options.yes === true;
  if (!go && ask) go = await ask(`No VGG-19 weights in ${cacheDir()}. Download ${source.description} (${source.megabytes} MB) now? [Y/n] `);
  if (!go)
    throw new UserError(
      `--weights: no VGG-19 weights installed: run \`nst weights fetch\` (or add --yes to download now), pass --weights FILE|random:SEED, or set NST_WEIGHTS`,
    );
  return fetchWeights({ log: options.log, ...options.fetch });
}

/** Asks a yes/no question on the terminal (stderr); Enter means yes. */
export async function askOnTerminal(question: string): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(question)).trim().toLowerCase();
    return answer === '' || answer === 'y' || answer === 'yes';
  } finally {
    rl.close();
  }
}
