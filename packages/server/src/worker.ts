import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { formatUserError, isUserError, kebabCase, type Backend, type LossValues, type WeightSet } from '@nst/core';
import { batchCapacity, compatibilityKey, jobSize, mergePlans, type PackLimits } from '@nst/batch';
import {
  checkFingerprint,
  decodeCheckpoint,
  encodeCheckpoint,
  jobFromOptions,
  withWeightDefaults,
  prepareRender,
  runOptimisation,
  type CheckpointStore,
  type RenderConfig,
  type RenderPlan,
} from '@nst/job';
import { UnrecoverableError, Worker, type ConnectionOptions } from 'bullmq';
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
import type { BlobStore } from './store.js';

export interface WorkerOptions {
  readonly store: BlobStore;
  readonly connection: ConnectionOptions;
  /** Opened, with `weights` loaded. */
  readonly backend: Backend;
  readonly weights: WeightSet;
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
  readonly log: (line: string) => void;
}

/** A job taken from the queue, its inputs in scratch space, waiting for a batch. */
interface Pending {
  readonly job: RenderJob;
  readonly config: RenderConfig;
  readonly checkpoints: CheckpointStore;
  readonly key: string;
  readonly capacity: number;
  readonly startIteration: number;
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
    const key = pending[0].key;
    const batch: Pending[] = [];
    for (let k = 0; k < pending.length && batch.length < pending[0].capacity; )
      if (pending[k].key === key) batch.push(...pending.splice(k, 1));
      else k++;
    const ids = batch.map((p) => p.job.id).join(', ');
    o.log(`batch of ${batch.length}${batch[0].startIteration > 0 ? ` from iteration ${batch[0].startIteration}` : ''}: ${ids}`);
    const prepared: { p: Pending; plan: RenderPlan }[] = [];
    for (const p of batch) {
      try {
        // The checkpoint stays until the result is in the store: a worker lost in between loses nothing.
        const checkpointStore = { ...p.checkpoints, clear: async () => undefined };
        prepared.push({ p, plan: { ...(await prepareRender(p.config, o.weights)), checkpointStore } });
      } catch (e) {
        p.reject(jobError(e));
      }
    }
    if (prepared.length === 0) return;
    const plan = mergePlans(prepared.map((x) => x.plan));
    const iterations = plan.iterations;
    const losses: (LossValues | undefined)[] = prepared.map(() => undefined);
    let previews = 0;
    let lastReport = 0;
    const report = (iteration: number, force = false) => {
      if (!force && performance.now() - lastReport < 1000) return;
      lastReport = performance.now();
      prepared.forEach(({ p }, k) => {
        const progress: RenderProgress = { iteration, iterations, losses: losses[k], preview: previews };
        p.job.updateProgress(progress as unknown as object).catch(() => undefined);
      });
    };
    try {
      const result = await runOptimisation(
        o.backend,
        plan,
        {
          onReport: (r) => r.losses.forEach((l, k) => (losses[k] = l)),
          onProgress: (i) => report(i),
          onResumed: (i) => o.log(`resumed ${ids} at iteration ${i}`),
          previewEveryMs: o.previewEveryMs,
          onPreview: async (images, iteration) => {
            previews++;
            await Promise.all(
              images.map(async (img, k) => {
                const jpeg = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), {
                  raw: { width: img.width, height: img.height, channels: 3 },
                })
                  .jpeg({ quality: 80 })
                  .toBuffer();
                await o.store.put(previewKey(prepared[k].p.job.id!), jpeg);
              }),
            );
            report(iteration, true);
          },
        },
        controller.signal,
      );
      // Stopping: the jobs stay active in the queue, checkpointed; once their locks expire another worker resumes them.
      if (result.interrupted) return;
      for (let k = 0; k < prepared.length; k++) {
        const { p } = prepared[k];
        const id = p.job.id!;
        const bytes = await fs.readFile(p.config.out);
        const wrote = await o.store.putOnce(resultKey(id), bytes);
        o.log(wrote ? `result ${id} written` : `result ${id} was already written by an earlier attempt`);
        await p.checkpoints.clear();
        await fs.rm(path.dirname(p.config.out), { recursive: true, force: true });
        p.resolve({ result: resultKey(id), losses: result.finalLosses[k], iterations: result.iterations });
      }
    } catch (e) {
      if (controller.signal.aborted) return;
      // One bad job must not fail the others: run each alone to find it.
      if (prepared.length > 1) pending.unshift(...prepared.map((x) => ({ ...x.p, capacity: 1 })));
      else for (const { p } of prepared) p.reject(jobError(e));
    }
  };

  const take = async (job: RenderJob): Promise<RenderReturn> => {
    let entry: Omit<Pending, 'resolve' | 'reject'>;
    try {
      entry = await admit(job, o);
    } catch (e) {
      throw jobError(e);
    }
    return new Promise<RenderReturn>((resolve, reject) => {
      pending.push({ ...entry, resolve, reject });
      schedule();
    });
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

/** Fetches a job's inputs into scratch space and works out its packing key and resume point. */
async function admit(job: RenderJob, o: WorkerOptions): Promise<Omit<Pending, 'resolve' | 'reject'>> {
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
  // Loss layers the job left out come from the weight set when it has its own (the built-in blocks 1-3).
  const config = jobFromOptions(withWeightDefaults(values, o.weights).values);
  // The job's identity for its checkpoint: what it asks for and the weights, not where its inputs lie on this machine.
  const fingerprint = createHash('sha256')
    .update(JSON.stringify({ data: job.data, weights: o.weights.sha256 ?? o.weights.source }))
    .digest('hex');
  const checkpoints = storeCheckpoints(o.store, checkpointKey(id), fingerprint);
  const startIteration = Math.min((await checkpoints.read())?.iteration ?? 0, config.iterations);
  const size = await jobSize(config);
  return {
    job,
    config,
    checkpoints,
    startIteration,
    key: compatibilityKey(config, size, startIteration),
    capacity: batchCapacity(o.backend, size, config.loss, o.limits),
  };
}

/** A job's checkpoint as a blob in the store. */
export function storeCheckpoints(store: BlobStore, key: string, fingerprint: string): CheckpointStore {
  return {
    name: key,
    async read() {
      const bytes = await store.get(key);
      return bytes && checkFingerprint(decodeCheckpoint(bytes, key), fingerprint, key);
    },
    write: (state) => store.put(key, encodeCheckpoint({ fingerprint, ...state })),
    clear: () => store.delete(key),
  };
}

/** Input errors fail a job at once with the field at fault (JSON key); anything else is retried. */
function jobError(e: unknown): Error {
  if (e instanceof UnrecoverableError) return e;
  if (isUserError(e)) return new UnrecoverableError(formatUserError(e, kebabCase));
  return e instanceof Error ? e : new Error(String(e));
}
