import { Command, Option } from 'commander';
import { UserError, type Backend, type WeightSet } from '@nst/core';
import {
  checkMemory,
  JOB_OPTIONS,
  jobFromOptions,
  parseCount,
  prepareRender,
  runOptimisation,
  type JobOption,
  type JobOptionValues,
  type RenderConfig,
  type RenderPlan,
  type RenderShape,
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

/**
 * A single-valued option given twice must agree with itself: `--size 400x300
 * --size 800x600` is a mistake (which one did the user mean?), not a silent
 * override. The same value twice is harmless. Commander's `previous` cannot
 * tell a default from a first value, so the values seen are kept here.
 */
function once(option: Option, field: string): Option {
  let seen: string | undefined;
  const choices = option.argChoices;
  return option.argParser((value: string) => {
    if (seen !== undefined && seen !== value)
      throw new UserError(`given twice with different values ('${seen}' and '${value}'): give it once`, { code: 'conflict', field });
    if (choices && !choices.includes(value))
      throw new UserError(`'${value}' is not one of ${choices.join(', ')}`, { field });
    seen = value;
    return value;
  });
}

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
  command
    .addOption(once(new Option('-b, --backend <name>', 'compute backend').choices(BACKEND_CHOICES as string[]).default('auto'), 'backend'))
    .addOption(once(new Option('--precision <p>', 'GPU arithmetic (cuda backend only)').choices(['fp32', 'tf32', 'bf16']).default('tf32'), 'precision'))
    .addOption(once(new Option('--gpu <n>', 'GPU index (cuda backend only)').default('0'), 'gpu'))
    .option('--json', 'print one JSON object per reported iteration on stdout, then a summary')
    .option('-y, --yes', 'fetch the default weights without asking when none are installed')
    .action(async (flags: RenderFlags) => {
      const given = (name: string) => command.getOptionValueSource(name) === 'cli';
      await render(flags, CUDA_ONLY.filter(given));
    });
}

/** Flags that only the cuda backend reads. */
const CUDA_ONLY = ['precision', 'gpu'] as const;

/**
 * CUDA-only flags the user gave (`--gpu 1`) against a backend that is not
 * cuda: with an explicit `--backend cpu|tfjs` that is a contradiction, an
 * error; when auto chose a non-GPU backend, the flag is ignored and a notice
 * says so (the same command line then works on machines with and without a GPU).
 */
function checkCudaOnlyFlags(choice: string, given: readonly string[]): void {
  if (given.length > 0 && choice !== 'auto' && choice !== 'cuda')
    throw new UserError(`${given.map(flagFor).join(' and ')} ${given.length > 1 ? 'apply' : 'applies'} to the cuda backend only, not ${choice}`, {
      code: 'conflict',
      field: 'backend',
    });
}

async function render(flags: RenderFlags, cudaFlagsGiven: readonly string[] = []): Promise<void> {
  const config = parseConfig(flags);
  checkCudaOnlyFlags(flags.backend, cudaFlagsGiven);
  const gpu = parseCount(flags.gpu, 'gpu');
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
    opened = await openBackend(flags.backend as BackendChoice, { precision: flags.precision as 'fp32' | 'tf32' | 'bf16', gpu }, (line) => view.info(line));
    if (opened.name !== 'cuda' && cudaFlagsGiven.length > 0)
      view.info(`note: ${cudaFlagsGiven.map(flagFor).join(' and ')} ignored: the ${opened.name} backend runs without a GPU`);
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
async function chooseWeights(flags: RenderFlags, view: ProgressView): Promise<WeightSet> {
  const source = flags.weights ?? (await ensureDefaultWeights({ yes: flags.yes, log: (line: string) => view.info(line) }));
  return loadWeights(source);
}

/** The job described by the flags (every job option, parsed and checked by @nst/render). */
export function parseConfig(flags: RenderFlags): RenderConfig & { readonly weights?: string } {
  const values: Record<string, JobOptionValues[string]> = {};
  for (const o of JOB_OPTIONS) values[o.field] = flags[o.field] as JobOptionValues[string];
  return jobFromOptions(values);
}
