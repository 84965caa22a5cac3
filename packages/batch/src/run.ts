import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { formatUserError, isUserError, kebabCase, UserError, type Backend, type LossValues, type WeightSet } from '@nst/core';
import { checkpointPathFor, prepareRender, readCheckpoint, runOptimisation, type RenderConfig, type RenderPlan } from '@nst/job';
import type { ManifestJob } from './manifest.js';
import { batchCapacity, compatibilityKey, jobSize, mergePlans, packGroups, type PackLimits } from './pack.js';

/** One line of the results file. */
export interface JobResult {
  readonly job: string;
  readonly line: number;
  /** done: rendered now; skipped: its output was finished by an earlier run; interrupted: checkpointed, a re-run resumes it. */
  readonly status: 'done' | 'failed' | 'skipped' | 'interrupted';
  readonly output?: string;
  readonly losses?: LossValues;
  readonly iterations?: number;
  readonly seconds?: number;
  /** One line naming the manifest key at fault. */
  readonly error?: string;
}

/** What a progress view hears while a batch runs. */
export type BatchEvent =
  | { readonly event: 'start'; readonly jobs: number; readonly toRender: number; readonly batches: number }
  | {
      readonly event: 'batch';
      readonly jobs: readonly string[];
      readonly width: number;
      readonly height: number;
      readonly startIteration: number;
    }
  | {
      readonly event: 'progress';
      readonly done: number;
      readonly failed: number;
      readonly running: number;
      readonly remaining: number;
      readonly imagesPerHour: number | null;
      readonly etaSeconds: number | null;
    }
  | ({ readonly event: 'job' } & JobResult)
  | {
      readonly event: 'summary';
      readonly done: number;
      readonly failed: number;
      readonly skipped: number;
      readonly interrupted: number;
      readonly seconds: number;
      readonly imagesPerHour: number | null;
      readonly results: string;
    };

export interface BatchOptions {
  /** Opened, with `weights` loaded. */
  readonly backend: Backend;
  readonly weights: WeightSet;
  readonly limits: PackLimits;
  /** The results file (JSON Lines), rewritten by each run. */
  readonly resultsFile: string;
  readonly signal?: AbortSignal;
  /** Progress events come at most this often (job and batch events always). */
  readonly progressEveryMs?: number;
}

interface Runnable {
  readonly job: ManifestJob;
  readonly config: RenderConfig;
  readonly key: string;
  readonly capacity: number;
  readonly startIteration: number;
}

/**
 * Runs a manifest's jobs: finished outputs are skipped, checkpointed ones
 * resume, compatible jobs are packed into engine batches, and a job that
 * fails does so alone (a batch that fails is re-run one job at a time).
 * Each job's result is a line of the results file as soon as it is known.
 */
export async function runBatch(
  jobs: readonly ManifestJob[],
  options: BatchOptions,
  onEvent: (e: BatchEvent) => void,
): Promise<JobResult[]> {
  const started = performance.now();
  const results: JobResult[] = [];
  await fs.mkdir(path.dirname(path.resolve(options.resultsFile)), { recursive: true });
  await fs.writeFile(options.resultsFile, '');
  const record = async (r: JobResult) => {
    results.push(r);
    await fs.appendFile(options.resultsFile, JSON.stringify(r) + '\n');
    onEvent({ event: 'job', ...r });
  };
  const fail = (job: ManifestJob, e: unknown) =>
    record({ job: job.id, line: job.line, status: 'failed', output: job.config?.out, error: describeError(e) });

  // Sort out what to render: failed lines, finished outputs, and the rest with their packing key.
  const runnable: Runnable[] = [];
  const outputs = new Set<string>();
  for (const job of jobs) {
    try {
      if (job.error || !job.config) throw job.error ?? new Error('no job');
      const config = { ...job.config, resume: true };
      if (config.contents.length !== 1)
        throw new UserError('a job has one content image (list several jobs for several)', { field: 'content' });
      const out = path.resolve(config.out);
      if (outputs.has(out)) throw new UserError(`another job already writes '${config.out}'`, { code: 'conflict', field: 'out' });
      outputs.add(out);
      const ckpt = checkpointPathFor(config);
      if (existsSync(out) && !existsSync(ckpt)) {
        await record({ job: job.id, line: job.line, status: 'skipped', output: config.out });
        continue;
      }
      await fs.mkdir(path.dirname(out), { recursive: true }).catch(() => undefined);
      const size = await jobSize(config);
      const startIteration = Math.min((await readCheckpoint(ckpt))?.iteration ?? 0, config.iterations);
      runnable.push({
        job,
        config,
        startIteration,
        key: compatibilityKey(config, size, startIteration),
        capacity: batchCapacity(options.backend, size, config.loss, options.limits),
      });
    } catch (e) {
      await fail(job, e);
    }
  }

  const queue = packGroups(
    runnable,
    (r) => r.key,
    (r) => r.capacity,
  );
  onEvent({ event: 'start', jobs: jobs.length, toRender: runnable.length, batches: queue.length });

  // Progress in iterations, so that the rate and the ETA move within a batch.
  const totalIterations = runnable.reduce((a, r) => a + r.config.iterations - r.startIteration, 0);
  let finishedIterations = 0;
  let running = 0;
  let lastProgress = 0;
  const count = (status: JobResult['status']) => results.filter((r) => r.status === status).length;
  const progress = (runningIterations: number, force = false) => {
    const now = performance.now();
    if (!force && now - lastProgress < (options.progressEveryMs ?? 1000)) return;
    lastProgress = now;
    const hours = (now - started) / 3_600_000;
    const doneIterations = finishedIterations + runningIterations;
    const perHour = doneIterations > 0 ? doneIterations / hours : 0;
    const done = count('done');
    onEvent({
      event: 'progress',
      done,
      failed: count('failed'),
      running,
      remaining: runnable.length - done - count('failed') - count('interrupted'),
      imagesPerHour: done > 0 ? Math.round(done / hours) : null,
      etaSeconds: perHour > 0 ? Math.round(((totalIterations - doneIterations) / perHour) * 3600) : null,
    });
  };

  while (queue.length > 0) {
    const batch = queue.shift()!;
    if (options.signal?.aborted) {
      for (const r of batch)
        await record({
          job: r.job.id,
          line: r.job.line,
          status: 'interrupted',
          output: r.config.out,
          error: 'not started: the batch was interrupted',
        });
      continue;
    }
    const plans: { r: Runnable; plan: RenderPlan }[] = [];
    for (const r of batch) {
      try {
        plans.push({ r, plan: await prepareRender(r.config, options.weights) });
      } catch (e) {
        await fail(r.job, e);
      }
    }
    if (plans.length === 0) continue;
    const plan = mergePlans(plans.map((p) => p.plan));
    const first = plans[0].r;
    onEvent({
      event: 'batch',
      jobs: plans.map((p) => p.r.job.id),
      width: plan.session.width,
      height: plan.session.height,
      startIteration: first.startIteration,
    });
    running = plans.length;
    try {
      const result = await runOptimisation(
        options.backend,
        plan,
        { onProgress: (i) => progress(plans.length * (i - first.startIteration)) },
        options.signal,
      );
      running = 0;
      finishedIterations += plans.length * (result.iterations - result.startIteration);
      for (let k = 0; k < plans.length; k++) {
        const { r } = plans[k];
        await record({
          job: r.job.id,
          line: r.job.line,
          status: result.interrupted ? 'interrupted' : 'done',
          output: r.config.out,
          losses: result.finalLosses[k],
          iterations: result.iterations,
          seconds: Number(result.seconds.toFixed(3)),
        });
      }
    } catch (e) {
      running = 0;
      // One bad job must not fail the others: run each alone to find it.
      if (plans.length > 1) queue.unshift(...plans.map((p) => [p.r]));
      else await fail(first.job, e);
    }
    progress(0, true);
  }
  const seconds = (performance.now() - started) / 1000;
  const done = count('done');
  onEvent({
    event: 'summary',
    done,
    failed: count('failed'),
    skipped: count('skipped'),
    interrupted: count('interrupted'),
    seconds: Number(seconds.toFixed(3)),
    imagesPerHour: done > 0 ? Math.round((done * 3600) / seconds) : null,
    results: options.resultsFile,
  });
  return results;
}

/** One line for the results file: the manifest key at fault (kebab-case), then what is wrong. */
export function describeError(e: unknown): string {
  if (isUserError(e)) return formatUserError(e, kebabCase);
  return `internal error: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`;
}
