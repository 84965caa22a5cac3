import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { formatUserError, isUserError, kebabCase, UserError, type LossValues } from '@nst/core';
import {
  changedFields,
  describeSteps,
  jobInputs,
  jobOutputs,
  prepareJob,
  readResultSettings,
  refuseOverwritesAcrossJobs,
  runJobGroup,
  weightedLosses,
  type Engine,
  type PreparedJob,
} from '@nst/job';
import type { ManifestJob } from './manifest.js';
import { batchCapacity, packGroups, type PackLimits } from './pack.js';

/** One line of the results file. */
export interface JobResult {
  readonly job: string;
  readonly line: number;
  /** done: rendered now; skipped: its output was made by an earlier run with the same settings and inputs; interrupted: checkpointed, a re-run resumes it. */
  readonly status: 'done' | 'failed' | 'skipped' | 'interrupted';
  readonly output?: string;
  /**
   * The final loss as the terms of its total: content is alpha x J_content,
   * style beta x J_style, tv tv-weight x J_tv; they add up to total.
   */
  readonly losses?: LossValues;
  readonly iterations?: number;
  /** The scales rendered, coarse to fine (the last is the output size). */
  readonly scales?: readonly { readonly size: string; readonly iterations: number }[];
  /**
   * The job's share of its engine batch's time: the jobs of a batch run
   * together, each iteration for all of them at once, so each is given the
   * batch's seconds divided by the number of its jobs (batchSeconds / batchSize).
   */
  readonly seconds?: number;
  /** The seconds of the engine batch the job ran in, and how many jobs it held. */
  readonly batchSeconds?: number;
  readonly batchSize?: number;
  /** Everything that makes the picture (the job's 'result' fingerprint, also in the output's metadata): a re-run skips the job while it is the same. */
  readonly fingerprint?: string;
  /** One line naming the manifest key at fault. */
  readonly error?: string;
}

/** What the batch will do with a line: render it (the first time, or again because `reason`), resume it, skip it, or fail it. */
export interface PlannedJob {
  readonly job: string;
  readonly line: number;
  readonly action: 'render' | 'resume' | 'skip' | 'fail';
  /** Why (a re-render's changes, where it resumes, why it fails). */
  readonly reason?: string;
  readonly output?: string;
  /** WxH, when known. */
  readonly size?: string;
}

/** A running job's progress: iterations over all its scales. */
export interface JobProgress {
  readonly job: string;
  readonly iteration: number;
  readonly iterations: number;
}

/** What a progress view hears while a batch runs. */
export type BatchEvent =
  | ({ readonly event: 'plan' } & PlannedJob)
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
      /** The jobs running now. */
      readonly jobs: readonly JobProgress[];
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
      /** The jobs that failed, with their reasons. */
      readonly failures: readonly { readonly job: string; readonly line: number; readonly error: string }[];
    }
  | {
      readonly event: 'dry-run';
      readonly toRender: number;
      readonly skipped: number;
      readonly failed: number;
      /** The engine batches the jobs to render would run in. */
      readonly batches: readonly { readonly jobs: readonly string[]; readonly size: string }[];
    };

export interface BatchOptions {
  /** The backend, opened, with the weights loaded (a dry run needs neither the weights in it nor a session). */
  readonly engine: Engine;
  readonly limits: PackLimits;
  /** The results file (JSON Lines), rewritten by each run (a dry run leaves it). */
  readonly resultsFile: string;
  readonly signal?: AbortSignal;
  /** Progress events come at most this often (job and batch events always). */
  readonly progressEveryMs?: number;
  /** Hears what the user should know that is not a job's result (leftovers removed, a photo whose shape changes). */
  readonly notice?: (line: string) => void;
  /** Render every job again from the beginning: finished outputs and checkpoints are replaced. */
  readonly force?: boolean;
  /** Check every job and say what would happen (plan events, then a dry-run event); render nothing, change nothing. */
  readonly dryRun?: boolean;
}

interface Runnable {
  readonly job: ManifestJob;
  readonly prepared: PreparedJob;
  readonly capacity: number;
}

/**
 * Runs a manifest's jobs through the job pipeline (prepareJob, runJobGroup):
 * a job whose output was made with the same settings and inputs is skipped
 * (the fingerprint in the output's metadata, else in the last results file,
 * equals the job's), one that changed is rendered again, checkpointed ones
 * resume, jobs with equal packing keys run as engine batches, and a job that
 * fails does so alone (a batch that fails is re-run one job at a time).
 * Each job's result is a line of the results file as soon as it is known. A
 * manifest in which one job would write over another's files is refused
 * before anything runs.
 */
export async function runBatch(
  jobs: readonly ManifestJob[],
  options: BatchOptions,
  onEvent: (e: BatchEvent) => void,
): Promise<JobResult[]> {
  const started = performance.now();
  const { engine, dryRun } = options;
  await refuseOverwrites(jobs, engine);

  const earlier = await earlierFingerprints(options.resultsFile);
  const results: JobResult[] = [];
  if (!dryRun) {
    await fs.mkdir(path.dirname(path.resolve(options.resultsFile)), { recursive: true });
    await fs.writeFile(options.resultsFile, '');
  }
  const record = async (r: JobResult) => {
    results.push(r);
    if (!dryRun) await fs.appendFile(options.resultsFile, JSON.stringify(r) + '\n');
    onEvent({ event: 'job', ...r });
  };
  const plans: PlannedJob[] = [];
  const plan = (p: PlannedJob) => {
    plans.push(p);
    onEvent({ event: 'plan', ...p });
  };

  // Sort out what to render: failed lines, unchanged outputs, and the rest prepared with their packing key.
  const runnable: Runnable[] = [];
  for (const job of jobs) {
    try {
      if (job.error || !job.config) throw job.error ?? new Error('no job');
      const config = { ...job.config, resume: !options.force, fresh: !!options.force };
      if (!dryRun) await fs.mkdir(path.dirname(path.resolve(config.out)), { recursive: true }).catch(() => undefined);
      const prepared = await prepareJob(config, engine.weights, { notice: options.notice, dryRun });
      const planned = { job: job.id, line: job.line, output: config.out, size: `${prepared.size.width}x${prepared.size.height}` };
      if (prepared.resumeAt.fromCheckpoint) plan({ ...planned, action: 'resume', reason: resumeReason(prepared) });
      else {
        const reason = options.force ? 'forced' : await renderReason(prepared, earlier);
        if (reason === undefined) {
          plan({ ...planned, action: 'skip', reason: 'made with the same settings and inputs' });
          if (!dryRun)
            await record({ job: job.id, line: job.line, status: 'skipped', output: config.out, fingerprint: prepared.fingerprint });
          continue;
        }
        plan({ ...planned, action: 'render', ...(reason ? { reason } : {}) });
      }
      runnable.push({ job, prepared, capacity: batchCapacity(engine.backend, prepared, options.limits) });
    } catch (e) {
      const error = describeError(e);
      plan({ job: job.id, line: job.line, action: 'fail', reason: error, output: job.config?.out });
      if (!dryRun) await record({ job: job.id, line: job.line, status: 'failed', output: job.config?.out, error });
    }
  }

  const queue = packGroups(
    runnable,
    (r) => r.prepared.key,
    (r) => r.capacity,
  );
  if (dryRun) {
    onEvent({
      event: 'dry-run',
      toRender: runnable.length,
      skipped: plans.filter((p) => p.action === 'skip').length,
      failed: plans.filter((p) => p.action === 'fail').length,
      batches: queue.map((b) => ({ jobs: b.map((r) => r.job.id), size: `${b[0].prepared.size.width}x${b[0].prepared.size.height}` })),
    });
    return results;
  }
  onEvent({ event: 'start', jobs: jobs.length, toRender: runnable.length, batches: queue.length });

  // Progress in iterations, so that the rate and the ETA move within a batch.
  const iterationsOf = (p: PreparedJob) => p.steps.reduce((a, step) => a + step.iterations, 0);
  const doneBefore = (p: PreparedJob) => p.steps.slice(0, p.resumeAt.scale).reduce((a, s) => a + s.iterations, 0) + p.resumeAt.iteration;
  const totalIterations = runnable.reduce((a, r) => a + iterationsOf(r.prepared) - doneBefore(r.prepared), 0);
  let finishedIterations = 0;
  let runningJobs: JobProgress[] = [];
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
      running: runningJobs.length,
      remaining: runnable.length - done - count('failed') - count('interrupted'),
      imagesPerHour: done > 0 ? Math.round(done / hours) : null,
      etaSeconds: perHour > 0 ? Math.round(((totalIterations - doneIterations) / perHour) * 3600) : null,
      jobs: runningJobs,
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
    // Iterations done by each of this group's jobs so far, over its scales (a resumed job counts what it had done).
    const total = iterationsOf(first);
    let before = 0;
    let iteration = doneBefore(first);
    const from = iteration;
    const show = () => (runningJobs = batch.map((r) => ({ job: r.job.id, iteration, iterations: total })));
    show();
    progress(0, true);
    try {
      const result = await runJobGroup(
        engine,
        batch.map((r) => r.prepared),
        {
          onScale: (k) => (before = first.steps.slice(0, k).reduce((a, s) => a + s.iterations, 0)),
          onProgress: (i) => {
            iteration = before + i;
            show();
            progress(batch.length * (iteration - from));
          },
        },
        options.signal,
      );
      // The jobs' last progress (where they ended), then the batch's results.
      progress(batch.length * (iteration - from), true);
      runningJobs = [];
      finishedIterations += batch.length * (iteration - from);
      for (let k = 0; k < batch.length; k++) {
        const { job, prepared } = batch[k];
        await record({
          job: job.id,
          line: job.line,
          status: result.interrupted ? 'interrupted' : 'done',
          output: prepared.job.out,
          losses: weightedLosses(prepared.job, result.finalLosses[k]),
          iterations: result.iterations,
          scales: describeSteps(prepared.steps),
          seconds: Number((result.seconds / batch.length).toFixed(3)),
          batchSeconds: Number(result.seconds.toFixed(3)),
          batchSize: batch.length,
          fingerprint: prepared.fingerprint,
        });
      }
    } catch (e) {
      runningJobs = [];
      // One bad job must not fail the others: run each alone to find it.
      if (batch.length > 1) queue.unshift(...batch.map((r) => [r]));
      else
        await record({ job: batch[0].job.id, line: batch[0].job.line, status: 'failed', output: first.job.out, error: describeError(e) });
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
    failures: results.filter((r) => r.status === 'failed').map((r) => ({ job: r.job, line: r.line, error: r.error ?? 'failed' })),
  });
  return results;
}

function resumeReason(p: PreparedJob): string {
  const scale = p.steps.length > 1 ? ` of scale ${p.resumeAt.scale + 1}/${p.steps.length}` : '';
  return `from its checkpoint, at iteration ${p.resumeAt.iteration}${scale}`;
}

/**
 * Why a job with no checkpoint renders: '' when its output does not exist,
 * what changed when the output was made otherwise, undefined when the
 * output was made with the same settings and inputs (the job is skipped).
 */
async function renderReason(p: PreparedJob, earlier: ReadonlyMap<string, string>): Promise<string | undefined> {
  const out = p.job.out;
  if (!existsSync(out)) return '';
  const recorded = await readResultSettings(out, 'out').catch(() => undefined);
  if (recorded) {
    if (recorded.state === 'final' && recorded.fingerprint === p.fingerprint) return undefined;
    const changed = changedFields(recorded, p.settings).map((c) =>
      c.contents ? `${kebabCase(c.field)} (the file's contents)` : kebabCase(c.field),
    );
    return `${changed.length > 0 ? changed.join(', ') : 'settings'} changed since '${out}' was made`;
  }
  const fingerprint = earlier.get(path.resolve(out));
  if (fingerprint === p.fingerprint) return undefined;
  return fingerprint ? `settings or inputs changed since '${out}' was made` : `'${out}' exists but records no settings: rendered again`;
}

/**
 * The fingerprints of the outputs an earlier run of the same results file
 * made (done or skipped), by absolute path: what a re-run compares when an
 * output carries no settings of its own.
 */
async function earlierFingerprints(resultsFile: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const text = await fs.readFile(resultsFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    try {
      const r = JSON.parse(line) as Partial<JobResult>;
      if ((r.status === 'done' || r.status === 'skipped') && r.output && r.fingerprint) found.set(path.resolve(r.output), r.fingerprint);
    } catch {
      // not a result line: ignored
    }
  }
  return found;
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
