import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Command, Option } from 'commander';
import { UserError, type WeightSet } from '@nst/core';
import { packGroups } from '@nst/batch';
import {
  checkpointPathFor,
  describeSteps,
  JOB_OPTIONS,
  jobFromOptions,
  optionsFor,
  prepareJob,
  runJobGroup,
  withWeightDefaults,
  type JobConfig,
  type JobOptionValues,
  type OptionSpec,
  type PreparedJob,
} from '@nst/job';
import { addBackendOptions, cudaFlagsGiven } from '../backends.js';
import { openEngine, weightsFor, YES_FLAG, type EngineFlags } from '../engine-options.js';
import { flagFor, once } from '../flags.js';
import { jsonView, plainView, ttyView, type ProgressView } from '../progress.js';

/** The flags of `nst render`: the job's options (JOB_OPTIONS) plus how to run it here. */
interface RenderFlags extends EngineFlags {
  [field: string]: unknown;
  json?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** A commander option for one job option: `--` + the kebab-case field, as flagFor() names it in errors. */
function jobFlag(field: keyof JobConfig, o: OptionSpec<unknown>): Option {
  const flags = `${o.short ? `-${o.short}, ` : ''}${flagFor(field)}${o.value ? ` <${o.value}>` : ''}`;
  // Defaults stay in jobFromOptions (one place for every front end); the help text shows them.
  let option = new Option(flags, o.default === undefined || !o.value ? o.description : `${o.description} (default: ${o.default})`);
  if (o.choices) option.choices(o.choices as string[]);
  if (o.repeatable) option.argParser(collect);
  else if (o.value) option = once(option, field);
  if (o.required) option.makeOptionMandatory();
  return option;
}

/** `nst render`'s flags and action (main.ts names and describes the command). */
export function defineRenderCommand(command: Command): void {
  for (const field of optionsFor('cli')) command.addOption(jobFlag(field, JOB_OPTIONS[field]));
  addBackendOptions(command)
    .option('--json', 'print one JSON object per reported iteration on stdout, then a summary')
    .option(...YES_FLAG)
    .action(async (flags: RenderFlags) => {
      await render(flags, cudaFlagsGiven(command));
    });
}

async function render(flags: RenderFlags, cudaFlags: readonly string[]): Promise<void> {
  const info = (line: string) => (flags.json ? process.stderr : process.stdout).write(line + '\n');
  const weights = await weightsFor(flags, info);
  const jobs = await jobsFromFlags(flags, weights, info);
  // Every check of the inputs and outputs, before the backend opens.
  const prepared: PreparedJob[] = [];
  for (const job of jobs) prepared.push(await prepareJob(job, weights, { notice: info }));
  const engine = await openEngine(flags, weights, info, cudaFlags);
  try {
    info(`backend: ${engine.backend.detail}`);
    info(`weights: ${weights.source} (${weights.format}, ${weights.layers.length} conv layers, ${weights.preprocessing.name})`);
    // SIGINT (Ctrl-C) and SIGTERM (kill, a service manager) both save the
    // current image and a checkpoint, then exit 128 + the signal's number
    // (130, 143) as a shell would report the signal; a second one quits at once.
    const controller = new AbortController();
    let exitStatus = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      const status = signal === 'SIGTERM' ? 143 : 130;
      if (controller.signal.aborted) process.exit(status);
      exitStatus = status;
      controller.abort();
      info(`interrupted (${signal}): saving the current image and a checkpoint (again to quit at once)`);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      // Photos of one size render together, as one engine batch.
      for (const group of packGroups(
        prepared,
        (p) => p.key,
        () => Infinity,
      )) {
        const interrupted = await renderGroup(engine, group, flags, controller.signal);
        if (interrupted) {
          process.exitCode = exitStatus || 130;
          break;
        }
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } finally {
    engine.backend.dispose();
  }
}

/** Renders jobs of one packing key with a progress view; returns whether it was interrupted. */
async function renderGroup(
  engine: Parameters<typeof runJobGroup>[0],
  group: readonly PreparedJob[],
  flags: RenderFlags,
  signal: AbortSignal,
): Promise<boolean> {
  const { job, size, steps } = group[0];
  const last = steps[steps.length - 1];
  const batch = group.length;
  const view: ProgressView = flags.json
    ? jsonView(
        (s) => process.stdout.write(s),
        (s) => process.stderr.write(s + '\n'),
      )
    : process.stdout.isTTY
      ? ttyView(process.stdout, last.iterations, job.tvWeight > 0)
      : plainView((s) => process.stdout.write(s), last.iterations, job.tvWeight > 0);
  const outs = group.map((p) => p.job.out);
  view.info(
    `rendering ${size.width}x${size.height}${batch > 1 ? `, batch ${batch}` : ''}, ${last.iterations} iterations${job.optimizer === 'lbfgs' ? ' (L-BFGS)' : ''} -> ${outs.join(', ')}`,
  );
  let result;
  try {
    // Coarse scales report one line each; the final scale drives the progress view.
    let final = steps.length === 1;
    result = await runJobGroup(
      engine,
      group,
      {
        onScale: (k, n, step) => {
          final = k === n - 1;
          if (n > 1) view.info(`scale ${k + 1}/${n}: ${step.size.width}x${step.size.height}, ${step.iterations} iterations`);
        },
        onScaleDone: (k, r) =>
          view.info(
            `scale ${k + 1}/${steps.length} done: J ${r.finalLosses.map((l) => l.total.toExponential(3)).join(', ')} in ${r.seconds.toFixed(1)} s`,
          ),
        onReport: (r) => final && view.report(r),
        onProgress: (i, ms) => final && view.progress(i, ms),
        onSaved: (f, i) => view.saved(f, i),
        onResumed: (i) => view.info(`resumed from ${group.map((p) => checkpointPathFor(p.job)).join(', ')} at iteration ${i}`),
        onNotice: (line) => view.info(line),
      },
      signal,
    );
  } finally {
    view.done();
  }
  // Over several scales the seconds cover them all: no per-iteration figure.
  const done = steps.length === 1 ? result.iterations - result.startIteration : 0;
  view.summary({
    backend: engine.backend.detail,
    size: `${size.width}x${size.height}`,
    width: size.width,
    height: size.height,
    batch,
    iterations: result.iterations,
    scales: describeSteps(steps),
    evaluations: result.evaluations,
    seconds: Number(result.seconds.toFixed(3)),
    secondsPerIteration: done > 0 ? Number((result.seconds / done).toFixed(4)) : null,
    interrupted: result.interrupted,
    output: result.outPaths.length === 1 ? result.outPaths[0] : result.outPaths,
    final: result.finalLosses.length === 1 ? result.finalLosses[0] : result.finalLosses,
  });
  if (!flags.json)
    view.info(
      `${result.interrupted ? 'stopped' : 'done'}: ${result.iterations} iterations (${result.evaluations} loss evaluations) in ${result.seconds.toFixed(1)} s` +
        (done > 0 ? ` (${(result.seconds / done).toFixed(3)} s/it)` : '') +
        (steps.length > 1 ? ` over ${steps.length} scales` : '') +
        `, wrote ${result.outPaths.join(', ')}` +
        (result.interrupted ? `; resume with --resume` : ''),
    );
  return result.interrupted;
}

/**
 * The jobs the flags describe: one per content image (several contents: the
 * output is a folder, each job writing `<folder>/<content stem>.png`), with
 * the loss layers of the weight set where none were named.
 */
async function jobsFromFlags(flags: RenderFlags, weights: WeightSet, info: (line: string) => void): Promise<JobConfig[]> {
  const given: Record<string, JobOptionValues[string]> = {};
  for (const field of optionsFor('cli')) given[field] = flags[field] as JobOptionValues[string];
  const { values, filled } = withWeightDefaults(given, weights);
  const contents = (flags.content as string[] | undefined) ?? [];
  const outs = contents.length > 1 ? folderOutputs(contents, String(flags.out)) : [flags.out as string];
  const jobs = contents.map((content, k) => jobFromOptions({ ...values, content, out: outs[k] }));
  if (jobs.length === 0) jobFromOptions(values); // names what is missing
  if (filled.length > 0) {
    const names = (field: 'contentLayers' | 'styleLayers') => jobs[0][field].map((l) => l.layer).join(', ');
    info(`layers: content ${names('contentLayers')}; style ${names('styleLayers')} (the weight set's own, where none were named)`);
  }
  if (contents.length > 1) await mkdir(String(flags.out), { recursive: true }).catch(() => undefined);
  return jobs;
}

/** The output of each content image when several are rendered into the folder `out`. */
function folderOutputs(contents: readonly string[], out: string): string[] {
  const outs = contents.map((c) => path.join(out, `${path.basename(c, path.extname(c))}.png`));
  const clash = outs.find((o, i) => outs.indexOf(o) !== i);
  if (clash)
    throw new UserError(`two content images would both be written to '${clash}': rename one`, { code: 'conflict', field: 'content' });
  return outs;
}
