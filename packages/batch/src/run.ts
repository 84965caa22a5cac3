import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { formatUserError, isUserError, kebabCase, UserError, type LossValues } from '@nst/core';
import {
  checkpointPathFor,
  describeSteps,
  jobInputs,
  jobOutputs,
  prepareJob,
  refuseOverwritesAcrossJobs,
  runJobGroup,
  type Engine,
  type PreparedJob,
} from '@nst/job';
import type { ManifestJob } from './manifest.js';
import { batchCapacity, packGroups, type PackLimits } from './pack.js';

/** One line of the results file. */
export interface JobResult {
  readonly job: string;
  readonly line: number;
  /** done: rendered now; skipped: its output was finished by an earlier run; interrupted: checkpointed, a re-run resumes it. */
  readonly status: 'done' | 'failed' | 'skipped' | 'interrupted';
  readonly output?: string;
  readonly losses?: LossValues;
  readonly iterations?: number;
  /** The scales rendered, coarse to fine (the last is the output size). */
  readonly scales?: readonly { readonly size: string; readonly iterations: number }[];
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
  /** The backend, opened, with the weights loaded. */
  readonly engine: Engine;
  readonly limits: PackLimits;
  /** The results file (JSON Lines), rewritten by each run. */
  readonly resultsFile: string;
  readonly signal?: AbortSignal;
  /** Progress events come at most this often (job and batch events always). */
  readonly progressEveryMs?: number;
  /** Hears what the user should know that is not a job's result (leftovers removed). */
  readonly notice?: (line: string) => void;
}

interface Runnable {
  readonly job: ManifestJob;
  readonly prepared: PreparedJob;
  readonly capacity: number;
}

/**
 * Runs a manifest's jobs through the job pipeline (prepareJob, runJobGroup):
 * finished outputs are skipped, checkpointed ones resume, jobs with equal
 * packing keys run as engine batches, and a job that fails does so alone (a
 * batch that fails is re-run one job at a time). Each job's result is a line
 * of the results file as soon as it is known. A manifest in which one job
 * would write over another's files is refused before anything runs.
 */
export async function runBatch(
  jobs: readonly ManifestJob[],
  options: BatchOptions,
  onEvent: (e: BatchEvent) => void,
): Promise<JobResult[]> {
  const started = performance.now();
  const { engine } = options;
  await refuseOverwrites(jobs, engine);

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

  // Sort out what to render: failed lines, finished outputs, and the rest prepared with their packing key.
  const runnable: Runnable[] = [];
  for (const job of jobs) {
    try {
      if (job.error || !job.config) throw job.error ?? new Error('no job');
      const config = { ...job.config, resume: true };
      if (existsSync(config.out) && !existsSync(checkpointPathFor(config))) {
        await record({ job: job.id, line: job.line, status: 'skipped', output: config.out });
        continue;
      }
      await fs.mkdir(path.dirname(path.resolve(config.out)), { recursive: true }).catch(() => undefined);
      const prepared = await prepareJob(config, engine.weights, { notice: options.notice });
      runnable.push({ job, prepared, capacity: batchCapacity(engine.backend, prepared, options.limits) });
    } catch (e) {
      await fail(job, e);
    }
  }

  const queue = packGroups(
    runnable,
    (r) => r.prepared.key,
    (r) => r.capacity,
  );
  onEvent({ event: 'start', jobs: jobs.length, toRender: runnable.length, batches: queue.length });

  // Progress in iterations, so that the rate and the ETA move within a batch.
  const remainingIterations = (p: PreparedJob) =>
    p.steps.reduce((a, step, k) => a + (k < p.resumeAt.scale ? 0 : step.iterations), 0) - p.resumeAt.iteration;
  const totalIterations = runnable.reduce((a, r) => a + remainingIterations(r.prepared), 0);
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
          output: r.prepared.job.out,
          error: 'not started: the batch was interrupted',
        });
      continue;
    }
    const first = batch[0].prepared;
    onEvent({
      event: 'batch',
      jobs: batch.map((r) => r.job.id),
      width: first.size.width,
      height: first.size.height,
      startIteration: first.resumeAt.iteration,
    });
    running = batch.length;
    // Iterations done by this group's jobs so far, over its scales (a resumed scale counts from where it resumed).
    let groupDone = 0;
    let scaleStart = 0;
    let scaleFirst = 0;
    try {
      const result = await runJobGroup(
        engine,
        batch.map((r) => r.prepared),
        {
          onScale: (k) => {
            scaleStart = groupDone;
            scaleFirst = k === first.resumeAt.scale ? first.resumeAt.iteration : 0;
          },
          onProgress: (i) => {
            groupDone = scaleStart + batch.length * (i - scaleFirst);
            progress(groupDone);
          },
        },
        options.signal,
      );
      running = 0;
      finishedIterations += groupDone;
      for (let k = 0; k < batch.length; k++) {
        const { job, prepared } = batch[k];
        await record({
          job: job.id,
          line: job.line,
          status: result.interrupted ? 'interrupted' : 'done',
          output: prepared.job.out,
          losses: result.finalLosses[k],
          iterations: result.iterations,
          scales: describeSteps(prepared.steps),
          seconds: Number(result.seconds.toFixed(3)),
        });
      }
    } catch (e) {
      running = 0;
      // One bad job must not fail the others: run each alone to find it.
      if (batch.length > 1) queue.unshift(...batch.map((r) => [r]));
      else await fail(batch[0].job, e);
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

/**
 * Refuses the whole manifest when one job would write over another's files
 * (or its own inputs): nothing of it runs, and the message names the key.
 */
async function refuseOverwrites(jobs: readonly ManifestJob[], engine: Engine): Promise<void> {
  const described = [];
  for (const { id, config } of jobs)
    if (config) described.push({ name: id, inputs: await jobInputs(config, engine.weights), outputs: jobOutputs(config) });
  try {
    await refuseOverwritesAcrossJobs(described);
  } catch (e) {
    if (isUserError(e)) throw new UserError(formatUserError(e, kebabCase), { code: e.code });
    throw e;
  }
}

/** One line for the results file: the manifest key at fault (kebab-case), then what is wrong. */
export function describeError(e: unknown): string {
  if (isUserError(e)) return formatUserError(e, kebabCase);
  return `internal error: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`;
}
