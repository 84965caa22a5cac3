import { Command, Option } from 'commander';
import type { Backend, WeightedLayer, WeightSet } from '@nst/core';
import {
  checkMemory,
  JOB_OPTIONS,
  jobFromOptions,
  prepareScales,
  runScales,
  type JobOption,
  type JobOptionValues,
  type RenderConfig,
  type RenderShape,
  type ScalePlan,
  withWeightDefaults,
} from '@nst/job';
import { EMBEDDED_SOURCE, WEIGHT_SOURCES, ensureDefaultWeights, loadWeights, resolveDefaultWeights } from '@nst/weights';
import { addBackendOptions, cudaFlagsGiven, openBackendFor } from '../backends.js';
import { flagFor, once } from '../flags.js';
import { jsonView, plainView, ttyView, type ProgressView } from '../progress.js';

/** The flags of `nst render`: the job's options (JOB_OPTIONS) plus how to run it here. */
interface RenderFlags {
  [field: string]: unknown;
  weights?: string;
  backend: string;
  precision: string;
  gpu: string;
  json?: boolean;
  yes?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** A commander option for one job option: `--` + the kebab-case field, as flagFor() names it in errors. */
function jobFlag(o: JobOption): Option {
  const flags = `${o.short ? `-${o.short}, ` : ''}${flagFor(o.field)}${o.value ? ` <${o.value}>` : ''}`;
  // Defaults stay in jobFromOptions (one place for every front end); the help text shows them.
  let option = new Option(flags, o.default === undefined ? o.description : `${o.description} (default: ${o.default})`);
  if (o.choices) option.choices(o.choices as string[]);
  if (o.repeatable) option.argParser(collect);
  else if (o.value) option = once(option, o.field);
  if (o.required) option.makeOptionMandatory();
  return option;
}

export function registerRenderCommand(program: Command): void {
  const command = program
    .command('render')
    .description('optimise an image to keep the content of one photo in the style of one or more paintings');
  for (const o of JOB_OPTIONS) command.addOption(jobFlag(o));
  addBackendOptions(command)
    .option('--json', 'print one JSON object per reported iteration on stdout, then a summary')
    .option('-y, --yes', 'fetch the full VGG-19 weights when none are installed (else the built-in blocks 1-3 are used)')
    .action(async (flags: RenderFlags) => {
      await render(flags, cudaFlagsGiven(command));
    });
}

async function render(flags: RenderFlags, cudaFlags: readonly string[]): Promise<void> {
  let config = parseConfig(flags);
  const total = config.scales ? (config.scaleIterations?.at(-1) ?? config.iterations) : config.iterations;
  const view: ProgressView = flags.json
    ? jsonView(
        (s) => process.stdout.write(s),
        (s) => process.stderr.write(s + '\n'),
      )
    : process.stdout.isTTY
      ? ttyView(process.stdout, total, config.loss.tvWeight > 0)
      : plainView((s) => process.stdout.write(s), total, config.loss.tvWeight > 0);

  const weights = await chooseWeights(flags, view);
  const preset = withWeightDefaults(jobValues(flags), weights);
  if (preset.filled.length > 0) {
    config = jobFromOptions(preset.values);
    const names = (layers: readonly WeightedLayer[]) => layers.map((l) => l.layer).join(', ');
    view.info(
      `layers: content ${names(config.loss.contentLayers)}; style ${names(config.loss.styleLayers)} (the weight set's own, where none were named)`,
    );
  }
  // The backend opens once the job's paths and sizes are checked, and before
  // any image is decoded: its memory estimate may refuse the job first.
  // One plan per scale (coarse to fine); the last is the final size and writes the outputs.
  let opened: Backend | undefined;
  const open = async (shape: RenderShape) => {
    opened = await openBackendFor(flags, (line) => view.info(line), cudaFlags);
    checkMemory(opened, shape);
  };
  let scales: ScalePlan[];
  try {
    scales = await prepareScales(config, weights, { beforeLoading: open, notice: (line) => view.info(line) });
  } catch (e) {
    opened?.dispose();
    throw e;
  }
  const plan = scales[scales.length - 1].plan;
  const backend = opened!;
  try {
    view.info(`backend: ${backend.detail}`);
    view.info(`weights: ${weights.source} (${weights.format}, ${weights.layers.length} conv layers, ${weights.preprocessing.name})`);
    for (const note of plan.notes ?? []) view.info(note);
    await backend.loadWeights(weights);
    const { width, height, batch } = { ...plan.session };
    view.info(
      `rendering ${width}x${height}${batch > 1 ? `, batch ${batch}` : ''}, ${plan.iterations} iterations${plan.optimizer === 'lbfgs' ? ' (L-BFGS)' : ''} -> ${plan.outPaths.join(', ')}`,
    );

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
      view.info(`interrupted (${signal}): saving the current image and a checkpoint (again to quit at once)`);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let result;
    try {
      // Coarse scales report one line each; the final scale drives the progress view.
      let final = scales.length === 1;
      result = await runScales(
        backend,
        scales,
        {
          onScale: (k, n, s) => {
            final = s.final;
            if (n > 1) view.info(`scale ${k + 1}/${n}: ${s.size.width}x${s.size.height}, ${s.plan.iterations} iterations`);
          },
          onScaleDone: (k, r) =>
            view.info(
              `scale ${k + 1}/${scales.length} done: J ${r.finalLosses.map((l) => l.total.toExponential(3)).join(', ')} in ${r.seconds.toFixed(1)} s`,
            ),
          onReport: (r) => final && view.report(r),
          onProgress: (i, ms) => final && view.progress(i, ms),
          onSaved: (f, i) => view.saved(f, i),
          onResumed: (i) => view.info(`resumed from ${plan.checkpointPath} at iteration ${i}`),
          onNotice: (line) => view.info(line),
        },
        controller.signal,
      );
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      view.done();
    }
    // Over several scales the seconds cover them all: no per-iteration figure.
    const done = scales.length === 1 ? result.iterations - result.startIteration : 0;
    view.summary({
      backend: backend.detail,
      size: `${width}x${height}`,
      width,
      height,
      batch,
      iterations: result.iterations,
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
          (scales.length > 1 ? ` over ${scales.length} scales` : '') +
          `, wrote ${result.outPaths.join(', ')}` +
          (result.interrupted ? `; resume with --resume` : ''),
      );
    if (result.interrupted) process.exitCode = exitStatus || 130;
  } finally {
    backend.dispose();
  }
}

/**
 * The weights of nst render, batch and worker: --weights, else NST_WEIGHTS or
 * the installed full set, else (--yes) the full set fetched now, else the
 * built-in blocks 1-3, saying what the full network adds. Jobs then take
 * their loss layers from the set where they name none (withWeightDefaults).
 */
export async function chooseWeights(flags: { weights?: string; yes?: boolean }, view: Pick<ProgressView, 'info'>): Promise<WeightSet> {
  if (flags.weights) return loadWeights(flags.weights);
  const installed = await resolveDefaultWeights();
  if (installed || flags.yes)
    return loadWeights(installed ?? (await ensureDefaultWeights({ yes: true, log: (line: string) => view.info(line) })));
  view.info(
    `weights: no full VGG-19 installed, using the built-in blocks 1-3; the full network gives the notebook's result: nst weights fetch (${WEIGHT_SOURCES[0].megabytes} MB)`,
  );
  return loadWeights(EMBEDDED_SOURCE);
}

/** The job options as the flags give them (undefined where not given). */
function jobValues(flags: RenderFlags): JobOptionValues {
  const values: Record<string, JobOptionValues[string]> = {};
  for (const o of JOB_OPTIONS) values[o.field] = flags[o.field] as JobOptionValues[string];
  return values;
}

/** The job described by the flags (every job option, parsed and checked by @nst/job). */
export function parseConfig(flags: RenderFlags): RenderConfig & { readonly weights?: string } {
  return jobFromOptions(jobValues(flags));
}
