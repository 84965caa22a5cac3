import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { formatBytes, UserError, type WeightSet } from '@nst/core';
import { packGroups } from '@nst/batch';
import {
  checkJobFiles,
  checkpointPathFor,
  checkSameWeights,
  describePlan,
  describeSteps,
  lossOf,
  measureSecondsPerFlop,
  planGroup,
  jobFromOptions,
  optionsFor,
  partialPath,
  prepareJob,
  probeJobImages,
  readResultSettings,
  runJobGroup,
  valuesFrom,
  withWeightDefaults,
  type JobConfig,
  type JobOptionValues,
  type PreparedJob,
  type ResultSettings,
} from '@nst/job';
import { addBackendOptions, cudaFlagsGiven } from '../backends.js';
import {
  openEngine,
  sayFor,
  VERBOSE_FLAG,
  weightsFor,
  weightsInBrief,
  YES_FLAG,
  type EngineFlags,
  type MachineFlags,
  type Say,
} from '../engine-options.js';
import { flagFor } from '../flags.js';
import { onInterrupt } from '../interrupt.js';
import { addJobFlags, helpDefaultsHere, jobValuesOf } from '../job-flags.js';
import { jsonView, plainView, ttyView, type ProgressView } from '../progress.js';

/** The flags of `nst render`: the job's options (JOB_OPTIONS) plus how to run it here. */
interface RenderFlags extends EngineFlags, MachineFlags {
  [field: string]: unknown;
  json?: boolean;
  verbose?: boolean;
  from?: string;
  dryRun?: boolean;
}

const EXAMPLES = `
Examples:
  nst render -c photo.jpg -s painting.jpg -o result.png
  nst render -c photos/*.jpg -s painting.jpg -o out/        one result per photo: out/<photo>.png
  nst render -c photo.jpg -s a.jpg -s b.jpg --style-blend-weights 1,3 -o blend.png
  nst render -c photo.jpg -s painting.jpg --size 800 --preset hq -o large.png
  nst render -c photo.jpg -s painting.jpg --size 400x400 --fit cover -o square.png
  nst render ... --resume                                   after Ctrl-C: continue from <out>.ckpt
  nst render --from result.png -o again.png                 the same render again, from the settings in its file
  nst render -c photo.jpg -s painting.jpg --size 8192 --memory 10000 -o print.png   tile by tile when it must (exact)
  nst render ... --dry-run                                  the memory plan (peak, tiles, time per iteration); no render
  nst info result.png                                       the settings a result was made with
`;

const PLAN_EXAMPLES = `
Examples:
  nst plan -c photo.jpg -s painting.jpg --size 8192 -o print.png                   free memory less a margin
  nst plan -c photo.jpg -s painting.jpg --size 8192 --memory 10000 -o print.png    within 10000 MiB
  nst plan ... --tile 1024                                  tiles of 1024 pixels (and their halo)
`;

/** The help's defaults of the loss layers, as the weights in use here have them (only when help is asked for). */
const helpDefaults = await helpDefaultsHere();

/** `nst render`'s flags and action (main.ts names and describes the command). */
export function defineRenderCommand(command: Command): void {
  renderCommand(command, false);
}

/**
 * `nst render`, or `nst plan` (= `nst render --dry-run`): the same flags, the
 * same checks; the plan prints each job's memory plan instead of rendering.
 */
export function renderCommand(command: Command, planOnly: boolean): void {
  addJobFlags(command, optionsFor('cli'), helpDefaults);
  addBackendOptions(command)
    .option('--from <image>', 'render again with the settings an image made by nst records (flags given here win)')
    .option('--json', planOnly ? 'print the plan as JSON' : 'print one JSON object per reported iteration on stdout, then a summary');
  if (!planOnly)
    command.option('--dry-run', 'print the memory plan (peak memory, tiling, time per iteration) and render nothing (as nst plan)');
  command
    .option(...VERBOSE_FLAG)
    .option(...YES_FLAG)
    .addHelpText('after', planOnly ? PLAN_EXAMPLES : EXAMPLES)
    .action(async (flags: RenderFlags) => {
      await render({ ...flags, dryRun: planOnly || flags.dryRun }, cudaFlagsGiven(command));
    });
}

async function render(flags: RenderFlags, cudaFlags: readonly string[]): Promise<void> {
  const say = sayFor(flags);
  // The user's own mistakes first: every value, and every input and output file, before the weights and the backend.
  const from = flags.from === undefined ? undefined : await settingsFrom(flags.from);
  const given = jobValuesOf(flags, optionsFor('cli'));
  const values = from ? { ...given, ...(await valuesFrom(from, given, flags.from!)) } : given;
  for (const job of jobsOf(values)) {
    await probeJobImages(job);
    await checkJobFiles(job, { source: job.weights ?? '' }, true);
  }
  const weights = await weightsFor({ ...flags, weights: flags.weights ?? from?.weights.source }, flags.yes ? say.line : say.detail);
  if (from) checkSameWeights(from, weights, flags.from!);
  const jobs = await jobsWithWeights(values, weights, say);
  const prepared: PreparedJob[] = [];
  for (const job of jobs) {
    const p = await prepareJob(job, weights, { notice: say.line, nameField: flagFor, dryRun: flags.dryRun });
    if (job.resume && !p.resumeAt.fromCheckpoint) say.line(`no checkpoint ${p.checkpoint.name} to resume: starting from the beginning`);
    prepared.push(p);
  }
  const engine = await openEngine(flags, weights, say.line, cudaFlags, say.detail);
  if (flags.dryRun) {
    try {
      await printPlans(engine, prepared, flags);
    } finally {
      engine.backend.dispose();
    }
    return;
  }
  try {
    say.detail(`backend: ${engine.backend.detail}`);
    say.detail(`weights: ${weights.source} (${weights.format}, ${weights.layers.length} conv layers, ${weights.preprocessing.name})`);
    if (from?.backend && from.backend !== engine.backend.detail)
      say.line(
        `note: '${flags.from}' was rendered on ${from.backend}, this render runs on ${engine.backend.detail}: its last digits may differ`,
      );
    const interrupt = onInterrupt(say.line, 'the current image and a checkpoint');
    try {
      // Photos of one size render together, as one engine batch.
      for (const group of packGroups(
        prepared,
        (p) => p.key,
        () => Infinity,
      )) {
        const interrupted = await renderGroup(engine, group, flags, interrupt.signal, weightsInBrief(weights, flags.weights));
        if (interrupted) {
          process.exitCode = interrupt.exitStatus();
          break;
        }
      }
    } finally {
      interrupt.dispose();
    }
  } finally {
    engine.backend.dispose();
  }
}

/** The settings `--from` names: an image nst made, which records them. */
async function settingsFrom(file: string): Promise<ResultSettings> {
  const settings = await readResultSettings(file, 'from');
  if (!settings) throw new UserError(`'${file}' records no nst settings (only images nst made do)`, { code: 'unsupported', field: 'from' });
  return settings;
}

/**
 * The memory plan of every engine batch the jobs make (each scale's; the
 * final one in full), with the time per iteration from a short run here.
 */
async function printPlans(engine: Parameters<typeof runJobGroup>[0], prepared: readonly PreparedJob[], flags: RenderFlags): Promise<void> {
  const groups = packGroups(
    prepared,
    (p) => p.key,
    () => Infinity,
  );
  const first = prepared[0].job;
  // The plans first: the timing run below leaves the process larger than a render's would be when it plans.
  const planned = groups.map((group) => group[0].steps.map((_, k) => planGroup(engine, group, k)));
  const secondsPerFlop = await measureSecondsPerFlop(engine.backend, { pooling: first.pooling, loss: lossOf(first) });
  for (const [g, group] of groups.entries()) {
    const plans = planned[g];
    const final = plans[plans.length - 1];
    if (flags.json) {
      process.stdout.write(
        JSON.stringify({
          event: 'plan',
          outputs: group.map((p) => p.job.out),
          ...final,
          secondsPerIteration: Number((final.flopsPerIteration * secondsPerFlop).toPrecision(3)),
          scales: plans.map((p) => ({ size: `${p.width}x${p.height}`, tiled: p.tiled !== undefined, peak: p.peak })),
        }) + '\n',
      );
      continue;
    }
    const say = sayFor(flags);
    say.line(`plan for ${group.map((p) => p.job.out).join(', ')} on ${engine.backend.detail}:`);
    for (const line of describePlan(final, secondsPerFlop)) say.line(`  ${line}`);
    plans
      .slice(0, -1)
      .forEach((p, k) =>
        say.line(
          `  scale ${k + 1}/${plans.length} (${p.width}x${p.height}): ${p.tiled ? `${p.tiled.tiles} tiles of ${p.tiled.core} px` : 'untiled'}, about ${formatBytes(p.peak)} at the peak`,
        ),
      );
  }
}

/** Renders jobs of one packing key with a progress view; returns whether it was interrupted. */
async function renderGroup(
  engine: Parameters<typeof runJobGroup>[0],
  group: readonly PreparedJob[],
  flags: RenderFlags,
  signal: AbortSignal,
  weights: string,
): Promise<boolean> {
  const { job, size, steps } = group[0];
  const last = steps[steps.length - 1];
  const batch = group.length;
  const say = sayFor(flags);
  const view: ProgressView = flags.json
    ? jsonView(
        (s) => process.stdout.write(s),
        (s) => process.stderr.write(s + '\n'),
      )
    : process.stdout.isTTY
      ? ttyView(process.stdout, last.iterations, job.tvWeight > 0)
      : plainView((s) => process.stdout.write(s), last.iterations, job.tvWeight > 0);
  const outs = group.map((p) => p.job.out);
  const iterations = steps.length > 1 ? `${steps.length} scales to ${last.iterations} iterations` : `${last.iterations} iterations`;
  // The one line a render starts with: the size, the backend, the weights.
  view.info(
    `rendering ${batch > 1 ? `${batch} photos at ` : ''}${size.width}x${size.height}, ${iterations}${job.optimizer === 'lbfgs' ? ' (L-BFGS)' : ''} on ${engine.backend.detail}; weights: ${weights} -> ${outs.join(', ')}`,
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
        onSaved: (f, i, state) => state === 'snapshot' && view.saved(f, i),
        onResumed: (i) => view.info(`resumed from ${group.map((p) => checkpointPathFor(p.job)).join(', ')} at iteration ${i}`),
        onNotice: (line, detail) => (detail ? flags.verbose && view.info(line) : view.info(line)),
      },
      signal,
    );
  } finally {
    view.done();
  }
  const written = result.interrupted ? result.outPaths.map(partialPath) : result.outPaths;
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
    output: written.length === 1 ? written[0] : written,
    final: result.finalLosses.length === 1 ? result.finalLosses[0] : result.finalLosses,
  });
  if (!flags.json) {
    const evaluations = result.evaluations !== done ? ` (${result.evaluations} loss evaluations)` : '';
    say.line(
      `${result.interrupted ? 'stopped' : 'done'}: ${result.iterations} iterations${evaluations} in ${result.seconds.toFixed(1)} s` +
        (done > 0 ? ` (${(result.seconds / done).toFixed(3)} s/it)` : '') +
        (steps.length > 1 ? ` over ${steps.length} scales` : '') +
        `, wrote ${written.join(', ')}` +
        (result.interrupted ? `; --resume continues it` : ''),
    );
  }
  return result.interrupted;
}

/**
 * The jobs the option values describe: one per content image (several
 * contents: the output is a folder, each job writing `<folder>/<content
 * stem>.png`). Parsed without the weights' layers: this checks the values.
 */
function jobsOf(values: JobOptionValues): JobConfig[] {
  const contents = (values.content as readonly string[] | string | undefined) ?? [];
  const list = typeof contents === 'string' ? [contents] : contents;
  if (list.length === 0) return [jobFromOptions(values)]; // names what is missing
  const outs = list.length > 1 ? folderOutputs(list, String(values.out)) : [values.out as string];
  return list.map((content, k) => jobFromOptions({ ...values, content, out: outs[k] }));
}

/** The jobs with the loss layers of the weight set where none were named; several contents: their folder made. */
async function jobsWithWeights(values: JobOptionValues, weights: WeightSet, say: Say): Promise<JobConfig[]> {
  const { values: filled, filled: fields } = withWeightDefaults(values, weights);
  const jobs = jobsOf(filled);
  if (fields.length > 0) {
    const names = (field: 'contentLayers' | 'styleLayers') => jobs[0][field].map((l) => l.layer).join(', ');
    say.detail(`layers: content ${names('contentLayers')}; style ${names('styleLayers')} (the weight set's own, where none were named)`);
  }
  if (jobs.length > 1) await mkdir(String(values.out), { recursive: true }).catch(() => undefined);
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
