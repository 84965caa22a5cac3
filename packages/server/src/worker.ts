import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { formatUserError, isUserError, kebabCase, type LossValues } from '@nst/core';
import { batchCapacity, type PackLimits } from '@nst/batch';
import {
  checkFingerprint,
  checkMemory,
  decodeCheckpoint,
  describeSteps,
  encodeCheckpoint,
  jobFromOptions,
  lossOf,
  prepareJob,
  runJobGroup,
  withWeightDefaults,
  type CheckpointSlot,
  type Engine,
  type PreparedJob,
} from '@nst/job';
import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions } from 'bullmq';
import {
  checkpointKey,
  previewKey,
  QUEUE_NAME,
  reportErrors,
  resultKey,
  type RenderJob,
  type RenderProgress,
  type RenderReturn,
} from './queue.js';
import { isStoreUnavailable, type BlobStore } from './store.js';

export interface WorkerOptions {
  readonly store: BlobStore;
  readonly connection: ConnectionOptions;
  /** The backend, opened, with the weights loaded. */
  readonly engine: Engine;
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
}

/** A job handed back because the store could not take its files comes round again after this long. */
const STORE_RETRY_DELAY_MS = 30_000;

/** A job taken from the queue, its inputs in scratch space, checked and planned, waiting for a batch. */
interface Pending {
  readonly job: RenderJob;
  readonly prepared: PreparedJob;
  readonly capacity: number;
  resolve(r: RenderReturn): void;
  reject(e: unknown): void;
}

/**
 * A render worker: takes jobs from the queue (up to a batch at a time),
 * runs compatible ones together on its backend, reports progress and
 * previews, checkpoints to the store, and writes each result to the store
 * once. A worker that dies loses nothing: BullMQ gives its jobs to another
 * worker once their locks expire, which resumes them from their checkpoints.
 */
export function startWorker(o: WorkerOptions): { worker: Worker<RenderJob['data'], RenderReturn>; close(): Promise<void> } {
  const pending: Pending[] = [];
  let busy = false;
  const controller = new AbortController();
  // A store that cannot take a preview or a checkpoint does not stop a render: its progress stays in memory.
  const bestEffort = (what: string) => (e: unknown) => {
    if (!isStoreUnavailable(e)) throw e;
    o.log(`store: ${e.message}: ${what} not written; the render goes on`);
  };

  const schedule = () => {
    if (busy || pending.length === 0 || controller.signal.aborted) return;
    busy = true;
    setTimeout(() => {
      runNext()
        .catch((e) => o.log(`internal error: ${(e as Error).message}`))
        .finally(() => {
          busy = false;
          schedule();
        });
    }, o.gatherMs ?? 150);
  };

  const runNext = async () => {
    const key = pending[0].prepared.key;
    const batch: Pending[] = [];
    for (let k = 0; k < pending.length && batch.length < pending[0].capacity; )
      if (pending[k].prepared.key === key) batch.push(...pending.splice(k, 1));
      else k++;
    const ids = batch.map((p) => p.job.id).join(', ');
    const resumeAt = batch[0].prepared.resumeAt;
    o.log(`batch of ${batch.length}${resumeAt.fromCheckpoint ? ` from iteration ${resumeAt.iteration}` : ''}: ${ids}`);
    const iterations = batch[0].prepared.steps.reduce((a, s) => a + s.iterations, 0);
    const losses: (LossValues | undefined)[] = batch.map(() => undefined);
    let previews = 0;
    let lastReport = 0;
    // Iterations done over the scales before the one running.
    let before = 0;
    let iteration = 0;
    const report = (force = false) => {
      if (!force && performance.now() - lastReport < 1000) return;
      lastReport = performance.now();
      batch.forEach((p, k) => {
        const progress: RenderProgress = { iteration, iterations, losses: losses[k], preview: previews };
        p.job.updateProgress(progress as unknown as object).catch(() => undefined);
      });
    };
    try {
      const result = await runJobGroup(
        o.engine,
        batch.map((p) => p.prepared),
        {
          onScale: (k) => (before = batch[0].prepared.steps.slice(0, k).reduce((a, s) => a + s.iterations, 0)),
          onReport: (r) => r.losses.forEach((l, k) => (losses[k] = l)),
          onProgress: (i) => {
            iteration = before + i;
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
        controller.signal,
      );
      // Stopping: the jobs stay active in the queue, checkpointed; once their locks expire another worker resumes them.
      if (result.interrupted) return;
      for (let k = 0; k < batch.length; k++) {
        const p = batch[k];
        const id = p.job.id!;
        const bytes = await fs.readFile(p.prepared.job.out);
        const wrote = await untilStored(() => o.store.putOnce(resultKey(id), bytes), o.storeWaitMs ?? 600_000, controller.signal, o.log);
        o.log(wrote ? `result ${id} written` : `result ${id} was already written by an earlier attempt`);
        // The checkpoint stays until the result is in the store: a worker lost in between loses nothing.
        await o.store.delete(checkpointKey(id)).catch(bestEffort('the removal of a finished checkpoint'));
        await fs.rm(path.dirname(p.prepared.job.out), { recursive: true, force: true });
        p.resolve({
          result: resultKey(id),
          losses: result.finalLosses[k],
          iterations: result.iterations,
          scales: describeSteps(p.prepared.steps),
        });
      }
    } catch (e) {
      if (controller.signal.aborted) return;
      // The store, not a job, failed: every job waits for it.
      if (isStoreUnavailable(e)) for (const p of batch) p.reject(e);
      // One bad job must not fail the others: run each alone to find it.
      else if (batch.length > 1) pending.unshift(...batch.map((p) => ({ ...p, capacity: 1 })));
      else for (const p of batch) p.reject(e);
    }
  };

  const take = async (job: RenderJob, token?: string): Promise<RenderReturn> => {
    try {
      const entry = await admit(job, o, bestEffort('a checkpoint'));
      return await new Promise<RenderReturn>((resolve, reject) => {
        pending.push({ ...entry, resolve, reject });
        schedule();
      });
    } catch (e) {
      if (!isStoreUnavailable(e)) throw jobError(e);
      // Waiting for the store is not the job's failure: back to the queue, delayed, with its attempts untouched.
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
  });
  reportErrors(worker, o.log);
  return {
    worker,
    async close() {
      controller.abort();
      while (busy) await new Promise((r) => setTimeout(r, 50));
      await worker.close(true);
    },
  };
}

/**
 * Fetches a job's inputs into scratch space and prepares it as `nst render`
 * does (the same checks, schedule and memory check), so that a job that
 * cannot run fails now with the render's message and is not retried.
 */
async function admit(
  job: RenderJob,
  o: WorkerOptions,
  onCheckpointTrouble: (e: unknown) => void,
): Promise<Omit<Pending, 'resolve' | 'reject'>> {
  const id = job.id!;
  const inputs = path.join(o.scratchDir, 'inputs');
  await fs.mkdir(inputs, { recursive: true });
  const local = async (key: string) => {
    const file = path.join(inputs, path.basename(key));
    try {
      await fs.access(file);
    } catch {
      const bytes = await o.store.get(key);
      if (!bytes) throw new UnrecoverableError(`input ${key} is missing from the store`);
      // Several jobs may fetch the same input at once: each writes its own temporary file.
      const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
      await fs.writeFile(tmp, bytes);
      await fs.rename(tmp, file);
    }
    return file;
  };
  const jobDir = path.join(o.scratchDir, 'jobs', id.replace(/[^A-Za-z0-9-]/g, '_'));
  await fs.mkdir(jobDir, { recursive: true });
  const values = {
    ...job.data.options,
    content: await local(job.data.content),
    style: await Promise.all(job.data.styles.map(local)),
    out: path.join(jobDir, 'result.png'),
    saveEvery: '0',
    checkpointEvery: String(o.checkpointEvery),
    resume: true,
  };
  const { weights, backend } = o.engine;
  // Loss layers the job left out come from the weight set when it has its own (the built-in blocks 1-3).
  const config = jobFromOptions(withWeightDefaults(values, weights).values);
  const prepared = await prepareJob(config, weights, { checkpoint: storeCheckpointSlot(o.store, checkpointKey(id), onCheckpointTrouble) });
  const final = prepared.steps[prepared.steps.length - 1];
  checkMemory(backend, { ...prepared.size, batch: 1, pooling: config.pooling, loss: lossOf(config), styleSizes: final.styleSizes });
  return { job, prepared, capacity: batchCapacity(backend, prepared, o.limits) };
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
async function untilStored<T>(write: () => Promise<T>, waitMs: number, signal: AbortSignal, log: (line: string) => void): Promise<T> {
  const end = Date.now() + waitMs;
  for (let delay = 1000; ; delay = Math.min(2 * delay, 30_000)) {
    try {
      return await write();
    } catch (e) {
      if (!isStoreUnavailable(e) || Date.now() + delay > end || signal.aborted) throw e;
      log(`store: ${e.message}: trying again in ${delay / 1000} s`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** Input errors fail a job at once with the field at fault (JSON key); anything else is retried. */
function jobError(e: unknown): Error {
  if (e instanceof UnrecoverableError) return e;
  if (isUserError(e)) return new UnrecoverableError(formatUserError(e, kebabCase));
  return e instanceof Error ? e : new Error(String(e));
}
