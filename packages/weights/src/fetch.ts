/**
 * `nst weights fetch`: downloads a published VGG-19 file, verifies it against
 * its published checksum, converts it to the cache and deletes the original.
 * Downloads go to <cache>/downloads/<file>.part and resume with an HTTP Range
 * request after an interruption; only a verified file is renamed into place,
 * and a verified file is kept until it has been converted, so that a later
 * run converts it without downloading it again.
 *
 * Sources are tried in order, but the first is the smallest (80 MB) and the
 * others are 535-575 MB: after the first fails, the next is tried only with
 * consent (`fallback`, or `ask` answering yes). With no network at all, the
 * fetch stops at once with one line saying so and how to get the file by hand.
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
import { isUserError, UserError, type WeightSet } from '@nst/core';
import { cacheDir, cacheDirVariable, cachedLayers, cachePath, ensureCacheFolder, resolveDefaultWeights, writeCache } from './cache.js';
import { loadWeights } from './load.js';

export interface WeightSource {
  /** keras | matconvnet | caffe-pth | torchvision */
  readonly id: string;
  readonly description: string;
  readonly fileName: string;
  /** Canonical URL first, then mirrors serving the same bytes. */
  readonly urls: readonly string[];
  /** The published checksum; `prefix` when only its first hex digits are published (torchvision's file names). */
  readonly checksum: { readonly algorithm: 'md5' | 'sha256'; readonly hex: string; readonly prefix?: boolean };
  /** Size in MB (10^6 bytes), for the prompt. */
  readonly megabytes: number;
}

/**
 * The published files, smallest first. Where each URL, size and checksum was
 * confirmed: packages/weights/README.md ("Sources").
 */
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
    megabytes: 80, // 80,134,624 bytes
  },
  {
    id: 'matconvnet',
    description: "MatConvNet imagenet-vgg-verydeep-19 (the notebook's file, RGB)",
    fileName: 'imagenet-vgg-verydeep-19.mat',
    urls: ['https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat'],
    checksum: { algorithm: 'md5', hex: '106118b7cf60435e6d8e04f6a6dc3657' },
    megabytes: 535, // about 510 MiB
  },
  {
    id: 'caffe-pth',
    description: 'Caffe VGG-19 converted to PyTorch (neural-style-pt, BGR)',
    fileName: 'vgg19-d01eb7cb.pth',
    // (Its first host, s3-us-west-2.amazonaws.com/jcjohns-models, has answered 403 since February 2020.)
    urls: ['https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth'],
    checksum: { algorithm: 'sha256', hex: 'd01eb7cb', prefix: true },
    megabytes: 575, // 143,667,240 float32 parameters
  },
  {
    id: 'torchvision',
    description: "torchvision's VGG-19 (RGB, ImageNet mean/std; weaker stylisation)",
    fileName: 'vgg19-dcbb9e9d.pth',
    urls: ['https://download.pytorch.org/models/vgg19-dcbb9e9d.pth'],
    checksum: { algorithm: 'sha256', hex: 'dcbb9e9d', prefix: true },
    megabytes: 575, // torchvision's documentation says 548.1 MB, in MiB
  },
];

export interface FetchOptions {
  /** One source id; default: the first source, then the others (with consent) until one succeeds. */
  readonly source?: string;
  /** Replaces WEIGHT_SOURCES (tests). */
  readonly sources?: readonly WeightSource[];
  /** Go on to the next (larger) source after one fails, without asking. */
  readonly fallback?: boolean;
  /** Asked before going on to the next source when `fallback` is not set; without it the fetch stops there. */
  readonly ask?: (question: string) => Promise<boolean>;
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

/** How to get a source's file by hand: where from (its canonical URL), and the command that installs it. */
function byHand(source: WeightSource): { download: string; install: string } {
  const { algorithm, hex, prefix } = source.checksum;
  return {
    download: `download ${source.fileName} (${source.megabytes} MB, ${algorithm} ${hex}${prefix ? '...' : ''}) by hand from ${source.urls[0]}`,
    install: `nst weights import ${source.fileName}`,
  };
}

/**
 * No source could be reached at all: no network, or none that reaches the
 * hosts. The message is one line; `lines` says the same on three (what
 * happened, where to get the file by hand, the command that installs it).
 */
export class WeightsUnreachableError extends UserError {
  readonly lines: readonly string[];
  constructor(problem: string, source: WeightSource) {
    const { download, install } = byHand(source);
    super(`${problem}; ${download}, then run \`${install}\``, { code: 'unsupported' });
    this.lines = [problem, `${download},`, `then install it: ${install}`];
  }
}

/** Downloads, verifies and converts (see fetchWeightsDetailed); returns the cache file's path. */
export async function fetchWeights(options: FetchOptions = {}): Promise<string> {
  return (await fetchWeightsDetailed(options)).cachePath;
}

/** Why one URL of a source gave nothing; `unreachable` when no server answered at all. */
interface Failure {
  readonly where: string;
  readonly reason: string;
  readonly unreachable: boolean;
}

export async function fetchWeightsDetailed(options: FetchOptions = {}): Promise<FetchResult> {
  const all = options.sources ?? WEIGHT_SOURCES;
  const candidates = options.source ? [findSource(options.source, all)] : all;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const failures: Failure[] = [];
  for (const [i, source] of candidates.entries()) {
    if (i > 0) await consentToNext(source, candidates[i - 1], options);
    const outcome = await fetchSource(source, options, log);
    if (!Array.isArray(outcome)) return outcome;
    failures.push(...outcome);
    // Nothing answered: no network (or none to these hosts). Trying the larger files would only fail the same way.
    if (outcome.every((f) => f.unreachable)) throw new WeightsUnreachableError(unreachableProblem(outcome), candidates[0]);
  }
  const { download, install } = byHand(candidates[0]);
  throw new UserError(
    `could not get VGG-19 weights (${failures.map((f) => `${f.where}: ${f.reason}`).join('; ')}); ${download} and run \`${install}\`, which stores it in ${cachePath()}`,
  );
}

/** "the network is unreachable (...)" when every failure is one of DNS or routing, else which hosts could not be reached. */
function unreachableProblem(failures: readonly Failure[]): string {
  const hosts = [...new Set(failures.map((f) => hostOf(f.where)))].join(', ');
  const codes = [...new Set(failures.map((f) => f.reason))].join(', ');
  const offline = failures.every((f) => NO_NETWORK.has(f.reason));
  return offline
    ? `weights fetch: the network is unreachable (${hosts}: ${codes})`
    : `weights fetch: ${hosts} cannot be reached (${codes})`;
}

/** Errors that mean this machine has no route or no name service, rather than one server being down. */
const NO_NETWORK = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN']);

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** Throws (a UserError naming the two ways on) unless the user agreed to go on to `next` after `failed` failed. */
async function consentToNext(next: WeightSource, failed: WeightSource, options: FetchOptions): Promise<void> {
  if (options.fallback) return;
  const question = `${failed.id} failed. Download ${next.description} (${next.megabytes} MB) instead? [y/N] `;
  if (options.ask && (await options.ask(question))) return;
  throw new UserError(
    `weights fetch: ${failed.id} failed; the other sources are larger (${next.id}: ${next.megabytes} MB): ` +
      `run \`nst weights fetch --source ${next.id}\`, or add --fallback to try each in turn`,
  );
}

/** One source: its verified file from an earlier run, else each URL in turn; the result, or why each URL failed. */
async function fetchSource(source: WeightSource, options: FetchOptions, log: (l: string) => void): Promise<FetchResult | Failure[]> {
  const dir = join(cacheDir(), 'downloads');
  await ensureCacheFolder(dir, cacheDirVariable());
  const kept = join(dir, source.fileName);
  if (existsSync(kept)) {
    if (await verifies(kept, source)) {
      log(`weights: ${kept} was downloaded and verified before: converting it`);
      return convertOrReport(source, source.urls[0], kept, options, log);
    }
    await unlink(kept).catch(() => undefined);
  }
  const failures: Failure[] = [];
  for (const url of sourceUrls(source)) {
    try {
      const file = await downloadVerified(source, url, kept, options, log);
      return convertOrReport(source, url, file, options, log);
    } catch (e) {
      if (!(e instanceof DownloadError)) throw e;
      failures.push({ where: url, reason: e.message, unreachable: e.unreachable });
      if (!e.unreachable) log(`weights: ${url} failed: ${e.message}`);
    }
  }
  return failures;
}

/**
 * Converts a verified file into the cache. A file that does not convert is
 * reported and kept (it is the published file: a later nst may read it), and
 * the fetch moves on.
 */
async function convertOrReport(
  source: WeightSource,
  url: string,
  file: string,
  options: FetchOptions,
  log: (l: string) => void,
): Promise<FetchResult | Failure[]> {
  let set: WeightSet;
  try {
    set = await loadWeights(file);
  } catch (e) {
    if (!isUserError(e)) throw e;
    log(`weights: ${source.fileName} is the published file (checksum verified) but does not convert: ${e.message}; kept in ${file}`);
    return [{ where: file, reason: `does not convert (${e.message})`, unreachable: false }];
  }
  const path = await writeCache({ ...set, source: url });
  if (!options.keep) await unlink(file).catch(() => undefined);
  const stored = cachedLayers(set).map((l) => l.name);
  log(`weights: ${source.id} -> ${path} (${stored.length} layers stored, ${set.preprocessing.name})`);
  return { cachePath: path, source, set, stored };
}

/** A download that gave no verified file; `unreachable` when no server answered. */
class DownloadError extends Error {
  constructor(
    message: string,
    readonly unreachable: boolean,
  ) {
    super(message);
  }
}

async function verifies(path: string, source: WeightSource): Promise<boolean> {
  const digest = await hashFile(path, source.checksum.algorithm);
  return source.checksum.prefix ? digest.startsWith(source.checksum.hex) : digest === source.checksum.hex;
}

/** Downloads (resuming a .part file) and verifies into `final`; returns it. */
async function downloadVerified(
  source: WeightSource,
  url: string,
  final: string,
  options: FetchOptions,
  log: (l: string) => void,
): Promise<string> {
  const part = `${final}.part`;
  await download(url, part, options, log);
  if (!(await verifies(part, source))) {
    const digest = await hashFile(part, source.checksum.algorithm);
    await unlink(part).catch(() => undefined); // a bad file must not be resumed
    const { algorithm, hex, prefix } = source.checksum;
    throw new DownloadError(`checksum mismatch: ${algorithm} ${digest}, published ${hex}${prefix ? '...' : ''}`, false);
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
  let answered = false;
  try {
    const res = await fetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, signal: controller.signal, redirect: 'follow' });
    answered = true;
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
    if (controller.signal.aborted) throw new DownloadError(`no data for ${idleMs / 1000} s`, !answered);
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new DownloadError(cause?.code ?? cause?.message ?? (e as Error).message, !answered);
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
  // Someone who answered here is asked again before a larger source; --yes agreed to the first only.
  const askNext = options.yes ? undefined : (options.ask ?? (interactive ? (q: string) => askOnTerminal(q, false) : undefined));
  return fetchWeights({ log: options.log, ask: askNext, ...options.fetch });
}

/** Asks a yes/no question on the terminal (stderr); Enter means `enterMeans` (yes unless told). */
export async function askOnTerminal(question: string, enterMeans = true): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(question)).trim().toLowerCase();
    return answer === '' ? enterMeans : answer === 'y' || answer === 'yes';
  } finally {
    rl.close();
  }
}
