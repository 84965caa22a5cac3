import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { isUserError, type LossValues } from '@nst/core';
import { batchCapacity, type PackLimits } from '@nst/batch';
import {
  checkFingerprint,
  planGroup,
  decodeCheckpoint,
  describeSteps,
  encodeCheckpoint,
  frameName,
  jobFromOptions,
  MASK_FIELDS,
  NO_MASK,
  prepareJob,
  prepareVideo,
  renderVideo,
  runJobGroup,
  withWeightDefaults,
  type CheckpointSlot,
  type Engine,
  type FlowFunction,
  type PreparedJob,
  type VideoPlan,
} from '@nst/job';
import { DelayedError, UnrecoverableError, WaitingError, Worker, type RedisOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { inUserWords } from './failure-words.js';
import { LossHistory } from './loss-history.js';
import {
  checkpointKey,
  frameKey,
  previewKey,
  QUEUE_NAME,
  reportErrors,
  resultKey,
  videoResultKey,
  type JobMasks,
  type RenderJob,
  type RenderProgress,
  type RenderReturn,
  type VideoProgress,
} from './queue.js';
import { CANCELLED, count, HEARTBEAT_LIVES, registryKeys, type WorkerInfo } from './registry.js';
import { getInput, isStoreUnavailable, type BlobStore } from './store.js';

export interface WorkerOptions {
  readonly store: BlobStore;
  readonly connection: RedisOptions;
  /** The backend, opened, with the weights loaded. */
  readonly engine: Engine;
  /** The GPU it renders on, for the worker list (cuda backend). */
  readonly gpu?: string;
  readonly limits: PackLimits;
  /** Local scratch space for inputs and outputs on their way to and from the store. */
  readonly scratchDir: string;
  /** Checkpoint every job to the store every N iterations. */
  readonly checkpointEvery: number;
  /** A job whose worker stops renewing its lock for this long is given to another worker. */
  readonly lockMs: number;
  readonly previewEveryMs: number;
  /** Waits this long for more jobs before starting a batch. */
  readonly gatherMs?: number;
  /**
   * How long a finished result waits for a store that is full, read-only or
   * gone (retrying with backoff) before its job goes back to the queue,
   * delayed, without spending an attempt (default 10 minutes).
   */
  readonly storeWaitMs?: number;
  readonly log: (line: string) => void;
  /** The optical flow video jobs need (the native addon's), or why this worker has none. */
  readonly flow?: FlowFunction | { readonly unavailable: string };
}

/** A job handed back because the store could not take its files comes round again after this long. */
const STORE_RETRY_DELAY_MS = 30_000;
/** A video taken while this worker has one comes round again (to this worker or another) after this long. */
const VIDEO_BUSY_DELAY_MS = 5_000;

/** Why a job leaves this worker without an outcome: it goes back to the queue (the worker stops) or it was cancelled. */
class HandBack extends Error {
  constructor(readonly why: 'stopping' | 'cancelled') {
    super(why);
  }
}

/** A job taken from the queue, its inputs in scratch space, checked and planned, waiting for a batch. */
interface Pending {
  readonly job: RenderJob;
  readonly prepared: PreparedJob;
  readonly capacity: number;
  readonly history: LossHistory;
  /** The job's local input files and the names the user gave them, for errors in the user's words. */
  readonly names: ReadonlyMap<string, string>;
  resolve(r: RenderReturn): void;
  reject(e: unknown): void;
}

/** A video job taken from the queue, its inputs in scratch space, checked and planned, waiting for the engine. */
interface PendingVideo {
  readonly job: RenderJob;
  readonly plan: VideoPlan;
  readonly history: LossHistory;
  readonly names: ReadonlyMap<string, string>;
  /** The job's scratch folder. */
  readonly dir: string;
  /** Frames an earlier attempt stored (found done). */
  readonly restored: number;
  resolve(r: RenderReturn): void;
  reject(e: unknown): void;
}

/** The batch being rendered, and how to stop it. */
interface Running {
  readonly batch: Pending[];
  readonly controller: AbortController;
  /** Jobs of the batch cancelled while it ran. */
  readonly cancelled: Set<string>;
}

/**
 * A render worker: takes jobs from the queue (up to a batch at a time),
 * runs compatible ones together on its backend, reports progress and
 * previews, checkpoints to the store, and writes each result to the store
 * once. It tells the service it is alive (a heartbeat key in Redis, which
 * GET /api/workers lists) and whether it is rendering a job or holding it
 * for a batch. A cancelled job stops at once (the batch it was in goes on
 * without it). Stopping (SIGTERM) checkpoints the running jobs and hands
 * every job back to the queue. A worker that dies loses nothing either:
 * BullMQ gives its jobs to another worker once their locks expire, which
 * resumes them from their checkpoints.
 */
export function startWorker(o: WorkerOptions): { worker: Worker<RenderJob['data'], RenderReturn>; id: string; close(): Promise<void> } {
  const id = `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const redis = new Redis({ ...o.connection, maxRetriesPerRequest: 2 });
  const subscriber = new Redis({ ...o.connection, maxRetriesPerRequest: null });
  reportErrors(redis, o.log);
  reportErrors(subscriber, o.log);
  const pending: Pending[] = [];
  let running: Running | undefined;
  // Video jobs: one at a time, each alone on the engine, before the stills waiting for a batch.
  const videos: PendingVideo[] = [];
  let runningVideo: { readonly job: RenderJob; readonly controller: AbortController; cancelled: boolean } | undefined;
  let busy = false;
  const stopping = new AbortController();
  const stats = workerStats();
  // A store that cannot take a preview or a checkpoint does not stop a render: its progress stays in memory.
  const bestEffort = (what: string) => (e: unknown) => {
    if (!isStoreUnavailable(e)) throw e;
    void count(redis, 'store-errors:worker').catch(() => undefined);
    o.log(`store: ${e.message}: ${what} not written; the render goes on`);
  };

  const schedule = () => {
    if (busy || (pending.length === 0 && videos.length === 0) || stopping.signal.aborted) return;
    busy = true;
    setTimeout(() => {
      runNext()
        .catch((e) => o.log(`internal error: ${(e as Error).message}`))
        .finally(() => {
          busy = false;
          running = undefined;
          schedule();
        });
    }, o.gatherMs ?? 150);
  };

  const runNext = async () => {
    if (stopping.signal.aborted) return;
    if (videos.length > 0) return runVideo(videos.shift()!);
    if (pending.length === 0) return;
    const key = pending[0].prepared.key;
    const batch: Pending[] = [];
    for (let k = 0; k < pending.length && batch.length < pending[0].capacity; )
      if (pending[k].prepared.key === key) batch.push(...pending.splice(k, 1));
      else k++;
    const current: Running = { batch, controller: new AbortController(), cancelled: new Set() };
    running = current;
    const stop = () => current.controller.abort();
    stopping.signal.addEventListener('abort', stop);
    const ids = batch.map((p) => p.job.id).join(', ');
    const resumeAt = batch[0].prepared.resumeAt;
    o.log(`batch of ${batch.length}${resumeAt.fromCheckpoint ? ` from iteration ${resumeAt.iteration}` : ''}: ${ids}`);
    const iterations = batch[0].prepared.steps.reduce((a, s) => a + s.iterations, 0);
    const losses: (LossValues | undefined)[] = batch.map(() => undefined);
    const started = Date.now();
    let previews = 0;
    let lastReport = 0;
    // Iterations done over the scales before the one running, and where this attempt started.
    let before = 0;
    let iteration = 0;
    let first: number | undefined;
    const report = (force = false) => {
      if (!force && performance.now() - lastReport < 1000) return;
      lastReport = performance.now();
      const seconds = (Date.now() - started) / 1000;
      const rate = first !== undefined && seconds > 0 ? (iteration - first) / seconds : 0;
      batch.forEach((p, k) => {
        const progress: RenderProgress = {
          iteration,
          iterations,
          losses: losses[k],
          preview: previews,
          worker: id,
          rendering: true,
          started,
          rate,
          history: p.history.points(),
        };
        p.job.updateProgress(progress as unknown as object).catch(() => undefined);
      });
    };
    report(true);
    beat();
    try {
      const result = await runJobGroup(
        o.engine,
        batch.map((p) => p.prepared),
        {
          onScale: (k) => (before = batch[0].prepared.steps.slice(0, k).reduce((a, s) => a + s.iterations, 0)),
          onReport: (r) =>
            r.losses.forEach((l, k) => {
              losses[k] = l;
              batch[k].history.add(before + r.iteration, l.total);
            }),
          onProgress: (i) => {
            const now = before + i;
            first ??= now - 1;
            stats.iterations(now - iteration);
            iteration = now;
            report();
          },
          onResumed: (i) => o.log(`resumed ${ids} at iteration ${i}`),
          previewEveryMs: o.previewEveryMs,
          onPreview: async (images) => {
            previews++;
            await Promise.all(
              images.map(async (img, k) => {
                const jpeg = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), {
                  raw: { width: img.width, height: img.height, channels: 3 },
                })
                  .jpeg({ quality: 80 })
                  .toBuffer();
                await o.store.put(previewKey(batch[k].job.id!), jpeg).catch(bestEffort('a preview'));
              }),
            );
            report(true);
          },
        },
        current.controller.signal,
      );
      if (result.interrupted) {
        // Checkpointed: cancelled jobs end, the others go back to the queue and resume from their checkpoints.
        for (const p of batch) p.reject(new HandBack(current.cancelled.has(p.job.id!) ? 'cancelled' : 'stopping'));
        return;
      }
      for (let k = 0; k < batch.length; k++) {
        const p = batch[k];
        const jobId = p.job.id!;
        const bytes = await fs.readFile(p.prepared.job.out);
        const wrote = await untilStored(
          () => o.store.putOnce(resultKey(jobId), bytes),
          o.storeWaitMs ?? 600_000,
          stopping.signal,
          o.log,
          () => void count(redis, 'store-errors:worker').catch(() => undefined),
        );
        o.log(wrote ? `result ${jobId} written` : `result ${jobId} was already written by an earlier attempt`);
        // The checkpoint stays until the result is in the store: a worker lost in between loses nothing.
        await o.store.delete(checkpointKey(jobId)).catch(bestEffort('the removal of a finished checkpoint'));
        await fs.rm(path.dirname(p.prepared.job.out), { recursive: true, force: true });
        stats.imageDone();
        p.resolve({
          result: resultKey(jobId),
          losses: result.finalLosses[k],
          iterations: result.iterations,
          scales: describeSteps(p.prepared.steps),
          history: p.history.points(),
          started,
        });
      }
    } catch (e) {
      // Stopped (the worker stops, or a job of the batch was cancelled) while it failed: nobody's failure.
      if (current.controller.signal.aborted)
        for (const p of batch) p.reject(new HandBack(current.cancelled.has(p.job.id!) ? 'cancelled' : 'stopping'));
      // The store, not a job, failed: every job waits for it.
      else if (isStoreUnavailable(e)) for (const p of batch) p.reject(e);
      // One bad job must not fail the others: run each alone to find it.
      else if (batch.length > 1) pending.unshift(...batch.map((p) => ({ ...p, capacity: 1 })));
      else for (const p of batch) p.reject(e);
    } finally {
      stopping.signal.removeEventListener('abort', stop);
      running = undefined;
      beat();
    }
  };

  /**
   * Renders a video job: frames in order through renderVideo (job/video.ts,
   * as `nst video` does), each finished frame stored at once under
   * frames/<id>/ (the record a worker that takes the job after a lost one
   * resumes from: it fetches them and renders from the first missing one),
   * its progress (frames done, seconds per frame, an ETA) and a preview
   * reported as it goes; the .mp4 stored once at the end.
   */
  const runVideo = async (p: PendingVideo) => {
    const jobId = p.job.id!;
    const current = { job: p.job, controller: new AbortController(), cancelled: false };
    runningVideo = current;
    const stop = () => current.controller.abort();
    stopping.signal.addEventListener('abort', stop);
    const { plan } = p;
    const started = Date.now();
    let frames: VideoProgress = { done: p.restored, total: plan.frames };
    let iteration = 0;
    let iterations = 0;
    let losses: LossValues | undefined;
    let lastLosses: LossValues | undefined;
    let previews = 0;
    let lastReport = 0;
    const report = (force = false) => {
      if (!force && performance.now() - lastReport < 1000) return;
      lastReport = performance.now();
      const progress: RenderProgress = {
        iteration,
        iterations,
        losses,
        preview: previews,
        worker: id,
        rendering: true,
        started,
        rate: 0,
        history: p.history.points(),
        frames,
      };
      p.job.updateProgress(progress as unknown as object).catch(() => undefined);
    };
    const preview = async (png: Buffer | Uint8Array, raw?: { width: number; height: number }) => {
      const image = raw ? sharp(png, { raw: { ...raw, channels: 3 } }) : sharp(png);
      await o.store.put(previewKey(jobId), await image.jpeg({ quality: 80 }).toBuffer()).catch(bestEffort('a preview'));
      previews++;
    };
    report(true);
    beat();
    try {
      const result = await renderVideo(
        o.engine,
        plan,
        {
          onFrameStart: (frame, _total, n) => {
            frames = { ...frames, current: frame };
            iterations = n;
            iteration = 0;
            report(true);
          },
          onReport: (r) =>
            r.losses.forEach((l) => {
              losses = l;
            }),
          onProgress: (i) => {
            stats.iterations(Math.max(0, i - iteration));
            iteration = i;
            report();
          },
          previewEveryMs: o.previewEveryMs,
          onPreview: async ([img]) => {
            if (img) await preview(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), img);
            report(true);
          },
          onFrameDone: async (r) => {
            // A frame found done is one of the p.restored already reported: reporting it again
            // would move the job's frames done back (to 1, 2, ... as renderVideo walks them).
            if (r.skipped) return;
            o.log(`video ${jobId}: frame ${r.frame + 1}/${r.frames} done in ${r.seconds.toFixed(1)} s`);
            const bytes = await fs.readFile(r.file);
            // The first frame's input too: the job's content thumbnail.
            if (r.frame === 0)
              await o.store
                .put(frameKey(jobId, `input-${frameName(0)}`), await fs.readFile(path.join(plan.inputDir, frameName(0))))
                .catch(bestEffort('the first input frame'));
            await o.store.put(frameKey(jobId, frameName(r.frame)), bytes).catch(bestEffort(`frame ${r.frame + 1}`));
            await preview(bytes);
            if (r.losses) {
              lastLosses = r.losses;
              p.history.add(r.frame + 1, r.losses.total);
            }
            stats.imageDone();
            frames = { done: r.done, total: r.frames, secondsPerFrame: r.secondsPerFrame, etaSeconds: r.etaSeconds };
            report(true);
          },
        },
        current.controller.signal,
      );
      if (result.interrupted) {
        p.reject(new HandBack(current.cancelled ? 'cancelled' : 'stopping'));
        return;
      }
      const bytes = await fs.readFile(result.output);
      const wrote = await untilStored(
        () => o.store.putOnce(videoResultKey(jobId), bytes),
        o.storeWaitMs ?? 600_000,
        stopping.signal,
        o.log,
        () => void count(redis, 'store-errors:worker').catch(() => undefined),
      );
      o.log(wrote ? `result ${jobId} written (${plan.frames} frames)` : `result ${jobId} was already written by an earlier attempt`);
      // The frames stay until the video is in the store; then all but the first (the thumbnails) go.
      for (let t = 1; t < plan.frames; t++)
        await o.store.delete(frameKey(jobId, frameName(t))).catch(bestEffort('the removal of a stored frame'));
      await fs.rm(p.dir, { recursive: true, force: true });
      p.resolve({
        result: videoResultKey(jobId),
        ...(lastLosses ? { losses: lastLosses } : {}),
        iterations: plan.template.iterations,
        scales: [],
        history: p.history.points(),
        started,
      });
    } catch (e) {
      if (current.controller.signal.aborted) p.reject(new HandBack(current.cancelled ? 'cancelled' : 'stopping'));
      else p.reject(e);
    } finally {
      stopping.signal.removeEventListener('abort', stop);
      runningVideo = undefined;
      beat();
    }
  };

  /** Drops a cancelled job: from the pending list at once, from the running batch by stopping it (the others resume). */
  const cancel = (jobId: string) => {
    const v = videos.findIndex((p) => p.job.id === jobId);
    if (v >= 0) {
      const [p] = videos.splice(v, 1);
      p.reject(new HandBack('cancelled'));
      return;
    }
    if (runningVideo?.job.id === jobId) {
      runningVideo.cancelled = true;
      runningVideo.controller.abort();
      return;
    }
    const k = pending.findIndex((p) => p.job.id === jobId);
    if (k >= 0) {
      const [p] = pending.splice(k, 1);
      p.reject(new HandBack('cancelled'));
    } else if (running?.batch.some((p) => p.job.id === jobId)) {
      running.cancelled.add(jobId);
      running.controller.abort();
    }
  };
  void subscriber.subscribe(registryKeys.cancelChannel).catch(() => undefined);
  subscriber.on('message', (_channel: string, jobId: string) => cancel(jobId));

  const take = async (job: RenderJob, token?: string): Promise<RenderReturn> => {
    const names = new Map<string, string>();
    try {
      if (await redis.exists(registryKeys.cancel(job.id!))) throw new HandBack('cancelled');
      const before = (typeof job.progress === 'object' ? job.progress : {}) as Partial<RenderProgress>;
      const history = new LossHistory(before.history);
      // Held, not rendering yet: the API shows it queued until its batch starts.
      const held: RenderProgress = {
        iteration: 0,
        iterations: before.iterations ?? 0,
        worker: id,
        rendering: false,
        history: history.points(),
      };
      if (job.data.video) {
        // One video at a time: another waits in the queue for this worker or another.
        if (runningVideo || videos.length > 0) {
          await job.moveToDelayed(Date.now() + VIDEO_BUSY_DELAY_MS, token);
          throw new DelayedError();
        }
        // An earlier attempt stored the video but did not live to say so: it is done.
        if (await o.store.get(videoResultKey(job.id!))) {
          o.log(`result ${job.id} was already written by an earlier attempt`);
          return {
            result: videoResultKey(job.id!),
            iterations: Number(job.data.options.iterations ?? 0),
            scales: [],
            history: history.points(),
          };
        }
        await job.updateProgress({
          ...held,
          frames: { done: before.frames?.done ?? 0, total: job.data.video.frames },
        } as unknown as object);
        const entry = await admitVideo(job, o, names);
        if (stopping.signal.aborted) throw new HandBack('stopping');
        if (await redis.exists(registryKeys.cancel(job.id!))) throw new HandBack('cancelled');
        return await new Promise<RenderReturn>((resolve, reject) => {
          videos.push({ ...entry, history, names, resolve, reject });
          schedule();
        });
      }
      await job.updateProgress(held as unknown as object);
      const entry = await admit(job, o, bestEffort('a checkpoint'), names);
      if (stopping.signal.aborted) throw new HandBack('stopping');
      // A cancellation announced while the job was being fetched and checked found it nowhere: the marker tells.
      if (await redis.exists(registryKeys.cancel(job.id!))) throw new HandBack('cancelled');
      return await new Promise<RenderReturn>((resolve, reject) => {
        pending.push({ ...entry, history, names, resolve, reject });
        schedule();
      });
    } catch (e) {
      if (e instanceof DelayedError) throw e;
      if (e instanceof HandBack && e.why === 'cancelled') {
        o.log(`job ${job.id} cancelled`);
        void count(redis, 'cancelled').catch(() => undefined);
        throw new UnrecoverableError(CANCELLED);
      }
      if (e instanceof HandBack || stopping.signal.aborted) {
        o.log(`job ${job.id} goes back to the queue`);
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (!isStoreUnavailable(e)) {
        const error = inUserWords(e, names, job.data.options);
        if (error instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1))
          void count(redis, `failed:${failureCode(e)}`).catch(() => undefined);
        throw error;
      }
      // Waiting for the store is not the job's failure: back to the queue, delayed, with its attempts untouched.
      void count(redis, 'store-errors:worker').catch(() => undefined);
      o.log(`store: ${e.message}: job ${job.id} goes back to the queue for ${STORE_RETRY_DELAY_MS / 1000} s`);
      await job.moveToDelayed(Date.now() + STORE_RETRY_DELAY_MS, token);
      throw new DelayedError();
    }
  };

  const worker = new Worker<RenderJob['data'], RenderReturn>(QUEUE_NAME, take, {
    connection: o.connection,
    concurrency: o.limits.maxBatch,
    lockDuration: o.lockMs,
    stalledInterval: Math.max(500, Math.floor(o.lockMs / 2)),
    maxStalledCount: 10,
    name: id,
  });
  worker.on('completed', () => void count(redis, 'completed').catch(() => undefined));
  reportErrors(worker, o.log);

  // The heartbeat: what this worker is and does, under a key that lapses when it stops beating.
  const beatMs = Math.min(5000, Math.max(500, Math.floor(o.lockMs / 3)));
  const started = Date.now();
  const beat = () => {
    const info: WorkerInfo = {
      id,
      host: os.hostname(),
      backend: o.engine.backend.name,
      gpu: o.gpu ?? null,
      jobs: [...(runningVideo ? [runningVideo] : []), ...videos, ...(running?.batch ?? []), ...pending].map((p) => p.job.id!),
      rendering: [...(runningVideo ? [runningVideo] : []), ...(running?.batch ?? [])].map((p) => p.job.id!),
      started,
      heartbeat: Date.now(),
      ...stats.rates(),
    };
    redis.set(registryKeys.worker(id), JSON.stringify(info), 'PX', HEARTBEAT_LIVES * beatMs).catch(() => undefined);
  };
  beat();
  const heart = setInterval(beat, beatMs);

  return {
    worker,
    id,
    async close() {
      // No new jobs; the running batch checkpoints and stops; every job held goes back to the queue.
      const closing = worker.close();
      stopping.abort();
      for (const p of [...pending.splice(0), ...videos.splice(0)]) p.reject(new HandBack('stopping'));
      await closing;
      while (busy) await new Promise((r) => setTimeout(r, 20));
      clearInterval(heart);
      await redis.del(registryKeys.worker(id)).catch(() => undefined);
      redis.disconnect();
      subscriber.disconnect();
    },
  };
}

/** A worker's throughput, for its heartbeat: iterations per second over the last minute, images per hour since its first render. */
function workerStats() {
  const samples: { at: number; iterations: number }[] = [];
  let total = 0;
  let images = 0;
  let firstAt: number | undefined;
  return {
    iterations(n: number) {
      firstAt ??= Date.now();
      total += n;
      samples.push({ at: Date.now(), iterations: total });
      while (samples.length > 2 && samples[0].at < Date.now() - 60_000) samples.shift();
    },
    imageDone() {
      images++;
    },
    rates() {
      const a = samples[0];
      const b = samples.at(-1);
      const busyFor = a && b && Date.now() - b.at < 10_000 ? (b.at - a.at) / 1000 : 0;
      const hours = firstAt === undefined ? 0 : (Date.now() - firstAt) / 3_600_000;
      return {
        iterationsPerSecond: busyFor > 0 ? (b!.iterations - a.iterations) / busyFor : 0,
        imagesPerHour: hours > 0 ? images / hours : 0,
        imagesDone: images,
      };
    },
  };
}

/**
 * Fetches a job's inputs into scratch space and prepares it as `nst render`
 * does (the same checks, schedule and memory check), so that a job that
 * cannot run fails now with the render's message and is not retried.
 * `names` learns each local file and the name the user gave it.
 */
async function admit(
  job: RenderJob,
  o: WorkerOptions,
  onCheckpointTrouble: (e: unknown) => void,
  names: Map<string, string>,
): Promise<Omit<Pending, 'resolve' | 'reject' | 'history' | 'names'>> {
  const id = job.id!;
  const given = job.data.service?.names;
  // What the result records of its inputs: the names the user gave them, else their digests (never a path here).
  const recorded = new Map<string, string>();
  const local = async (key: string, name: string, given: string | undefined) => {
    const file = await inputInScratch(o, key, name);
    names.set(file, name);
    recorded.set(file, given ?? path.basename(key));
    return file;
  };
  const jobDir = path.join(o.scratchDir, 'jobs', id.replace(/[^A-Za-z0-9-]/g, '_'));
  await fs.mkdir(jobDir, { recursive: true });
  names.set(jobDir, 'the result');
  const values = {
    ...job.data.options,
    content: await local(job.data.content, given?.content ?? 'the content image', given?.content),
    style: await Promise.all(job.data.styles.map((s, k) => local(s, given?.styles[k] ?? `style image ${k + 1}`, given?.styles[k]))),
    ...(await masksInScratch(job.data.masks, given?.masks, local)),
    out: path.join(jobDir, 'result.png'),
    saveEvery: '0',
    checkpointEvery: String(o.checkpointEvery),
    resume: true,
  };
  const { weights, backend } = o.engine;
  // Loss layers the job left out come from the weight set when it has its own (the built-in blocks 1-3).
  const config = jobFromOptions(withWeightDefaults(values, weights).values);
  const prepared = await prepareJob(config, weights, {
    checkpoint: storeCheckpointSlot(o.store, checkpointKey(id), onCheckpointTrouble),
    inputNames: recorded,
  });
  // The render's memory plan (the worker's --memory, the job's own if lower): a job too large for it
  // untiled runs tile by tile, alone; one too large even so fails now.
  const plan = planGroup(o.engine, [prepared], prepared.steps.length - 1);
  return { job, prepared, capacity: plan.tiled ? 1 : batchCapacity(backend, prepared, o.limits) };
}

/** A job's masks as option values: each fetched into scratch space (`local`), `none` for a style without. */
async function masksInScratch(
  masks: JobMasks<string> | undefined,
  given: JobMasks<string> | undefined,
  local: (key: string, name: string, given: string | undefined) => Promise<string>,
): Promise<Record<string, string | string[]>> {
  const values: Record<string, string | string[]> = {};
  for (const field of MASK_FIELDS) {
    const keys = masks?.[field];
    if (!keys) continue;
    const what = { styleMask: 'style mask', styleRegion: 'style region', contentMask: 'content mask' }[field];
    const files = await Promise.all(
      keys.map((key, k) => {
        const name = given?.[field]?.[k] ?? undefined;
        return key === null ? NO_MASK : local(key, name ?? `${what} ${k + 1}`, name);
      }),
    );
    values[field] = field === 'contentMask' ? files[0] : files;
  }
  return values;
}

/**
 * Fetches a video job's inputs into scratch space, plans it as `nst video`
 * does (prepareVideo: the same checks), and puts the frames already stored
 * by an earlier attempt where renderVideo finds them done: a frame's PNG
 * records its job's fingerprint, so the render resumes at the first frame
 * missing (or made by other options).
 */
/**
 * An uploaded input in the worker's scratch folder, fetched from the store
 * once (checked against its key) and kept for the jobs that share it; its
 * local path. `name` is the user's name for it, for the error when the store
 * no longer has it.
 */
async function inputInScratch(o: WorkerOptions, key: string, name: string): Promise<string> {
  const file = path.join(o.scratchDir, 'inputs', path.basename(key));
  if (
    await fs.access(file).then(
      () => true,
      () => false,
    )
  )
    return file;
  const bytes = await getInput(o.store, key);
  if (!bytes) throw new UnrecoverableError(`the input '${name}' is no longer in the store (expired?): submit the job again`);
  await fs.mkdir(path.dirname(file), { recursive: true });
  // Several jobs may fetch the same input at once: each writes its own temporary file.
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await fs.writeFile(tmp, bytes);
  await fs.rename(tmp, file);
  return file;
}

async function admitVideo(
  job: RenderJob,
  o: WorkerOptions,
  names: Map<string, string>,
): Promise<Omit<PendingVideo, 'resolve' | 'reject' | 'history' | 'names'>> {
  const id = job.id!;
  const given = job.data.service?.names;
  const dir = path.join(o.scratchDir, 'jobs', id.replace(/[^A-Za-z0-9-]/g, '_'));
  await fs.mkdir(dir, { recursive: true });
  names.set(dir, 'the result');
  const fetchInput = async (key: string, name: string) => {
    const file = await inputInScratch(o, key, name);
    names.set(file, name);
    return file;
  };
  const input = await fetchInput(job.data.content, given?.content ?? 'the video');
  const styles = await Promise.all(job.data.styles.map((s, k) => fetchInput(s, given?.styles[k] ?? `style image ${k + 1}`)));
  const values = withWeightDefaults({ ...job.data.options, style: styles }, o.engine.weights).values;
  const plan = await prepareVideo(
    {
      values,
      input,
      output: path.join(dir, 'result.mp4'),
      flow: o.flow ?? { unavailable: 'this worker has no optical flow (nst worker loads the native addon built with OpenCV)' },
    },
    o.engine.weights,
  );
  // The frames an earlier attempt stored, in order up to the first missing one.
  let restored = 0;
  for (let t = 0; t < plan.frames; t++) {
    const bytes = await o.store.get(frameKey(id, frameName(t)));
    if (!bytes) break;
    const file = path.join(plan.framesDir, frameName(t));
    await fs.writeFile(`${file}.tmp`, bytes);
    await fs.rename(`${file}.tmp`, file);
    restored++;
  }
  if (restored > 0) o.log(`video ${id}: ${restored} of ${plan.frames} frames done before`);
  return { job, plan, dir, restored };
}

/**
 * A job's checkpoint as a blob in the store. It stays there until the
 * job's result is stored (the worker deletes it then), so a worker lost in
 * between loses nothing. A write the store cannot take goes to
 * `onWriteTrouble` (which may rethrow).
 */
export function storeCheckpointSlot(
  store: BlobStore,
  key: string,
  onWriteTrouble: (e: unknown) => void = (e) => {
    throw e;
  },
): CheckpointSlot {
  const read = async () => {
    const bytes = await store.get(key);
    return bytes ? decodeCheckpoint(bytes, key) : undefined;
  };
  return {
    name: key,
    peek: read,
    store: (fingerprint) => ({
      name: key,
      read: async () => {
        const ck = await read();
        return ck && checkFingerprint(ck, fingerprint, key);
      },
      write: (state) => store.put(key, encodeCheckpoint({ fingerprint, ...state })).catch(onWriteTrouble),
      clear: async () => undefined,
    }),
  };
}

/**
 * Runs `write` until the store takes it, waiting 1 s, 2 s, 4 s ... (at most
 * 30 s) while it is full, read-only or gone, for at most `waitMs` (then the
 * last StoreUnavailableError is thrown); other errors are thrown at once.
 */
async function untilStored<T>(
  write: () => Promise<T>,
  waitMs: number,
  signal: AbortSignal,
  log: (line: string) => void,
  onTrouble: () => void,
): Promise<T> {
  const end = Date.now() + waitMs;
  for (let delay = 1000; ; delay = Math.min(2 * delay, 30_000)) {
    try {
      return await write();
    } catch (e) {
      if (!isStoreUnavailable(e)) throw e;
      onTrouble();
      if (Date.now() + delay > end || signal.aborted) throw e;
      log(`store: ${e.message}: trying again in ${delay / 1000} s`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** The error code /metrics counts a failure under: a user error's own code, else `internal`. */
function failureCode(e: unknown): string {
  if (isUserError(e)) return e.code;
  if (e instanceof UnrecoverableError) return 'unrecoverable';
  return 'internal';
}
