import { Command, Option } from 'commander';
import type { Backend, WeightSet } from '@nst/core';
import {
  checkMemory,
  JOB_OPTIONS,
  jobFromOptions,
  prepareRender,
  runOptimisation,
  type JobOption,
  type JobOptionValues,
  type RenderConfig,
  type RenderPlan,
  type RenderShape,
} from '@nst/render';
import { ensureDefaultWeights, loadWeights } from '@nst/weights';
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
    .option('-y, --yes', 'fetch the default weights without asking when none are installed')
    .action(async (flags: RenderFlags) => {
      await render(flags, cudaFlagsGiven(command));
    });
}

async function render(flags: RenderFlags, cudaFlags: readonly string[]): Promise<void> {
  const config = parseConfig(flags);
  const total = config.iterations;
  const view: ProgressView = flags.json
    ? jsonView((s) => process.stdout.write(s), (s) => process.stderr.write(s + '\n'))
    : process.stdout.isTTY
      ? ttyView(process.stdout, total, config.loss.tvWeight > 0)
      : plainView((s) => process.stdout.write(s), total, config.loss.tvWeight > 0);

  const weights = await chooseWeights(flags, view);
  // The backend opens once the job's paths and sizes are checked, and before
  // any image is decoded: its memory estimate may refuse the job first.
  let opened: Backend | undefined;
  const open = async (shape: RenderShape) => {
    opened = await openBackendFor(flags, (line) => view.info(line), cudaFlags);
    checkMemory(opened, shape);
  };
  let plan: RenderPlan;
  try {
    plan = await prepareRender(config, weights, { beforeLoading: open, notice: (line) => view.info(line) });
  } catch (e) {
    opened?.dispose();
    throw e;
  }
  const backend = opened!;
  try {
    view.info(`backend: ${backend.detail}`);
    view.info(`weights: ${weights.source} (${weights.format}, ${weights.layers.length} conv layers, ${weights.preprocessing.name})`);
    await backend.loadWeights(weights);
    const { width, height, batch } = { ...plan.session };
    view.info(`rendering ${width}x${height}${batch > 1 ? `, batch ${batch}` : ''}, ${total} iterations -> ${plan.outPaths.join(', ')}`);

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
      result = await runOptimisation(backend, plan, {
        onReport: (r) => view.report(r),
        onProgress: (i, ms) => view.progress(i, ms),
        onSaved: (f, i) => view.saved(f, i),
        onResumed: (i) => view.info(`resumed from ${plan.checkpointPath} at iteration ${i}`),
        onNotice: (line) => view.info(line),
      }, controller.signal);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      view.done();
    }
    const done = result.iterations - result.startIteration;
    view.summary({
      backend: backend.detail,
      size: `${width}x${height}`,
      width,
      height,
      batch,
      iterations: result.iterations,
      seconds: Number(result.seconds.toFixed(3)),
      secondsPerIteration: done > 0 ? Number((result.seconds / done).toFixed(4)) : null,
      interrupted: result.interrupted,
      output: result.outPaths.length === 1 ? result.outPaths[0] : result.outPaths,
      final: result.finalLosses.length === 1 ? result.finalLosses[0] : result.finalLosses,
    });
    if (!flags.json)
      view.info(
        `${result.interrupted ? 'stopped' : 'done'}: ${result.iterations} iterations in ${result.seconds.toFixed(1)} s` +
          (done > 0 ? ` (${(result.seconds / done).toFixed(3)} s/it)` : '') +
          `, wrote ${result.outPaths.join(', ')}` +
          (result.interrupted ? `; resume with --resume` : ''),
      );
    if (result.interrupted) process.exitCode = exitStatus || 130;
  } finally {
    backend.dispose();
  }
}

/** --weights, else NST_WEIGHTS or the cache, else offer to fetch (asks on a terminal; --yes fetches). */
export async function chooseWeights(flags: { weights?: string; yes?: boolean }, view: Pick<ProgressView, 'info'>): Promise<WeightSet> {
  const source = flags.weights ?? (await ensureDefaultWeights({ yes: flags.yes, log: (line: string) => view.info(line) }));
  return loadWeights(source);
}

/** The job described by the flags (every job option, parsed and checked by @nst/render). */
export function parseConfig(flags: RenderFlags): RenderConfig & { readonly weights?: string } {
  const values: Record<string, JobOptionValues[string]> = {};
  for (const o of JOB_OPTIONS) values[o.field] = flags[o.field] as JobOptionValues[string];
  return jobFromOptions(values);
}
