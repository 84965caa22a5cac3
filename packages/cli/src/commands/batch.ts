import path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '@nst/core';
import { folderJobs, listFolderSources, loadManifest, manifestJobs, runBatch, type ManifestJob } from '@nst/batch';
import { JOB_OPTIONS, optionsFor, withWeightDefaults, type Engine, type JobConfig, type JobOptionValues } from '@nst/job';
import { openBackendFor } from '../backends.js';
import {
  addPackingOptions,
  machineSettings,
  openEngine,
  packLimits,
  sayFor,
  VERBOSE_FLAG,
  weightsFor,
  weightsInBrief,
  type PackingFlags,
} from '../engine-options.js';
import { batchView } from '../batch-view.js';
import { addJobFlags, helpDefaultsHere, jobValuesOf } from '../job-flags.js';

interface BatchFlags extends PackingFlags {
  [field: string]: unknown;
  results?: string;
  json?: boolean;
  verbose?: boolean;
  force?: boolean;
  dryRun?: boolean;
  photos?: string[];
  styles?: string[];
  out?: string;
}

/** The render options the command line may give every job that does not set its own: all a manifest takes but the job's photo and output. */
const ROW_DEFAULTS = optionsFor('manifest').filter((f) => f !== 'content' && f !== 'out');

const EXAMPLES = `
Examples:
  nst batch jobs.csv                              one job a row: content,style,out[,size,iterations,...]
  nst batch jobs.csv --size 800 -n 300            options for every row that does not set them
  nst batch jobs.csv --dry-run                    check every row and print the plan; render nothing
  nst batch jobs.csv --force                      render every row again from the beginning
  nst batch --photos photos/ --styles paintings/ -o out/   every photo in every style: out/<photo>-<style>.png
`;

/** The help's defaults of the loss layers, as the weights in use here have them (only when help is asked for). */
const helpDefaults = await helpDefaultsHere();

/** `nst batch`'s arguments, flags and action (main.ts names and describes the command). */
export function defineBatchCommand(command: Command): void {
  command
    .argument('[jobs]', 'the manifest: JSON Lines, or CSV with a header row (or folder mode: --photos, --styles, --out)')
    .option('--photos <path...>', 'folder mode: the photos of these folders (or these files) ...')
    .option('--styles <path...>', '... each rendered in the style of each painting of these folders (or files) ...')
    .option('-o, --out <folder>', '... into <folder>/<photo>-<style>.png')
    .option('--results <file>', 'results, one JSON line per job (default: <jobs>.results.jsonl; folder mode: <out>/results.jsonl)')
    .option('--force', 'render every job again from the beginning, even one whose output was made with the same settings and inputs')
    .option('--dry-run', 'check every job and print the plan (render, resume, skip, fail, and the engine batches); render nothing')
    .option('--json', 'print one JSON event per line on stdout')
    .option(...VERBOSE_FLAG)
    .optionsGroup('Render options, for every job that does not set its own:');
  addJobFlags(command, ROW_DEFAULTS, helpDefaults);
  command.optionsGroup('Engine:');
  addPackingOptions(command)
    .addHelpText('after', EXAMPLES)
    .action(async (jobsFile: string | undefined, flags: BatchFlags) => {
      await batch(jobsFile, flags);
    });
}

async function batch(jobsFile: string | undefined, flags: BatchFlags): Promise<void> {
  const say = sayFor(flags);
  // The user's own mistakes first (the manifest, the folders, the options), before the weights and the backend.
  const folderMode = flags.photos !== undefined || flags.styles !== undefined || flags.out !== undefined;
  if (jobsFile !== undefined && folderMode)
    throw new UserError(`give a manifest (${jobsFile}) or --photos, --styles and --out, not both`, { code: 'conflict', field: 'photos' });
  if (jobsFile === undefined)
    for (const field of ['photos', 'styles', 'out'] as const)
      if (flags[field] === undefined) throw new UserError('is required: give a manifest, or --photos, --styles and --out', { field });
  const manifest = jobsFile === undefined ? undefined : await loadManifest(jobsFile);
  const folder = manifest ? undefined : await listFolderSources({ photos: flags.photos!, styles: flags.styles!, out: flags.out! });
  const rowDefaults = jobValuesOf(flags, ROW_DEFAULTS, true);
  for (const field of ROW_DEFAULTS) {
    const value = rowDefaults[field];
    if (value !== undefined) JOB_OPTIONS[field].parse(value, field);
  }
  const limits = packLimits(flags);

  const weights = await weightsFor(flags, flags.yes ? say.line : say.detail);
  // A row's own values win over the command line's, which win over the weight set's layers and the defaults.
  const defaults = (values: JobOptionValues) => withWeightDefaults({ ...given(rowDefaults), ...values }, weights).values;
  const jobs: ManifestJob[] = manifest ? manifestJobs(manifest, { defaults }) : folderJobs(folder!, { defaults });
  // A dry run needs the backend's memory estimates, not the weights in it.
  const engine: Engine = flags.dryRun
    ? { backend: await openBackendFor(flags, say.line, [], say.detail), weights, machine: machineSettings(flags) }
    : await openEngine(flags, weights, say.line, [], say.detail);
  try {
    say.detail(`backend: ${engine.backend.detail}; weights: ${weights.source}`);
    say.line(
      `${jobs.length} job${jobs.length === 1 ? '' : 's'} on ${engine.backend.detail}; weights: ${weightsInBrief(weights, flags.weights)}`,
    );
    const controller = new AbortController();
    const onSignal = () => {
      if (controller.signal.aborted) process.exit(130);
      controller.abort();
      say.line('interrupted: checkpointing the running jobs (Ctrl-C again to quit at once)');
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      const view = batchView(flags.json ? 'json' : process.stdout.isTTY ? 'tty' : 'plain', (s) => process.stdout.write(s), {
        dryRun: flags.dryRun,
      });
      let planFailed = false;
      const results = await runBatch(
        jobs,
        {
          engine,
          limits,
          resultsFile: flags.results ?? (jobsFile ? defaultResultsFile(jobsFile) : path.join(flags.out!, 'results.jsonl')),
          signal: controller.signal,
          notice: say.line,
          force: flags.force,
          dryRun: flags.dryRun,
        },
        (e) => {
          if (e.event === 'plan' && e.action === 'fail') planFailed = true;
          view(e);
        },
      );
      if (results.some((r) => r.status === 'interrupted')) process.exitCode = 130;
      else if (planFailed || results.some((r) => r.status === 'failed')) process.exitCode = 1;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } finally {
    engine.backend.dispose();
  }
}

/** The values given (undefined ones left out, so that they do not hide a row's). */
function given(values: Record<string, JobOptionValues[string]>): Partial<Record<keyof JobConfig, JobOptionValues[string]>> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
}

/** The default results file of a manifest. */
export function defaultResultsFile(jobsFile: string): string {
  return path.join(path.dirname(jobsFile), `${path.basename(jobsFile)}.results.jsonl`);
}
