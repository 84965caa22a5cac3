import { Command, Option } from 'commander';
import type { WeightSet } from '@nst/core';
import {
  JOB_OPTIONS,
  jobFromOptions,
  parseCount,
  prepareScales,
  runScales,
  type JobOption,
  type JobOptionValues,
  type RenderConfig,
} from '@nst/render';
import { ensureDefaultWeights, loadWeights } from '@nst/weights';
import { BACKEND_CHOICES, openBackend, type BackendChoice } from '../backends.js';
import { flagFor } from '../flags.js';
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
  const option = new Option(flags, o.default === undefined ? o.description : `${o.description} (default: ${o.default})`);
  if (o.repeatable) option.argParser(collect);
  if (o.choices) option.choices(o.choices as string[]);
  if (o.required) option.makeOptionMandatory();
  return option;
}

export function registerRenderCommand(program: Command): void {
  const command = program
    .command('render')
    .description('optimise an image to keep the content of one photo in the style of one or more paintings');
  for (const o of JOB_OPTIONS) command.addOption(jobFlag(o));
  command
    .addOption(new Option('-b, --backend <name>', 'compute backend').choices(BACKEND_CHOICES as string[]).default('auto'))
    .addOption(new Option('--precision <p>', 'GPU arithmetic (cuda backend)').choices(['fp32', 'tf32', 'bf16']).default('tf32'))
    .option('--gpu <n>', 'GPU index (cuda backend)', '0')
    .option('--json', 'print one JSON object per reported iteration on stdout, then a summary')
    .option('-y, --yes', 'fetch the default weights without asking when none are installed')
    .action(async (flags: RenderFlags) => {
      await render(flags);
    });
}

async function render(flags: RenderFlags): Promise<void> {
  const config = parseConfig(flags);
  const total = config.scales ? (config.scaleIterations?.at(-1) ?? config.iterations) : config.iterations;
  const view: ProgressView = flags.json
    ? jsonView((s) => process.stdout.write(s), (s) => process.stderr.write(s + '\n'))
    : process.stdout.isTTY
      ? ttyView(process.stdout, total, config.loss.tvWeight > 0)
      : plainView((s) => process.stdout.write(s), total, config.loss.tvWeight > 0);

  const weights = await chooseWeights(flags, view);
  // One plan per scale (coarse to fine); the last is the final size and writes the outputs.
  const scales = await prepareScales(config, weights);
  const plan = scales[scales.length - 1].plan;
  const backend = await openBackend(
    flags.backend as BackendChoice,
    { precision: flags.precision as 'fp32' | 'tf32' | 'bf16', gpu: parseCount(flags.gpu, 'gpu') },
    (line) => view.info(line),
  );
  try {
    view.info(`backend: ${backend.detail}`);
    view.info(`weights: ${weights.source} (${weights.format}, ${weights.layers.length} conv layers, ${weights.preprocessing.name})`);
    for (const note of plan.notes ?? []) view.info(note);
    await backend.loadWeights(weights);
    const { width, height, batch } = { ...plan.session };
    view.info(`rendering ${width}x${height}${batch > 1 ? `, batch ${batch}` : ''}, ${plan.iterations} iterations${plan.optimizer === 'lbfgs' ? ' (L-BFGS)' : ''} -> ${plan.outPaths.join(', ')}`);

    const controller = new AbortController();
    const onSigint = () => {
      if (controller.signal.aborted) process.exit(130);
      controller.abort();
      view.info('interrupted: saving the current image and a checkpoint (Ctrl-C again to quit at once)');
    };
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    let result;
    try {
      // Coarse scales report one line each; the final scale drives the progress view.
      let final = scales.length === 1;
      result = await runScales(backend, scales, {
        onScale: (k, n, s) => {
          final = s.final;
          if (n > 1) view.info(`scale ${k + 1}/${n}: ${s.size.width}x${s.size.height}, ${s.plan.iterations} iterations`);
        },
        onScaleDone: (k, r) =>
          view.info(`scale ${k + 1}/${scales.length} done: J ${r.finalLosses.map((l) => l.total.toExponential(3)).join(', ')} in ${r.seconds.toFixed(1)} s`),
        onReport: (r) => final && view.report(r),
        onProgress: (i, ms) => final && view.progress(i, ms),
        onSaved: (f, i) => view.saved(f, i),
        onResumed: (i) => view.info(`resumed from ${plan.checkpointPath} at iteration ${i}`),
      }, controller.signal);
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
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
    if (result.interrupted) process.exitCode = 130;
  } finally {
    backend.dispose();
  }
}

/** --weights, else NST_WEIGHTS or the cache, else offer to fetch (asks on a terminal; --yes fetches). */
async function chooseWeights(flags: RenderFlags, view: ProgressView): Promise<WeightSet> {
  const source = flags.weights ?? (await ensureDefaultWeights({ yes: flags.yes, log: (line: string) => view.info(line) }));
  return loadWeights(source);
}

/** The job described by the flags (every job option, parsed and checked by @nst/render). */
export function parseConfig(flags: RenderFlags): RenderConfig {
  const values: Record<string, JobOptionValues[string]> = {};
  for (const o of JOB_OPTIONS) values[o.field] = flags[o.field] as JobOptionValues[string];
  return jobFromOptions(values);
}
