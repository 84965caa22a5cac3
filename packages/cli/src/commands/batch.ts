import path from 'node:path';
import type { Command } from 'commander';
import { readManifest, runBatch } from '@nst/batch';
import { withWeightDefaults } from '@nst/job';
import { addPackingOptions, openEngine, packLimits, weightsFor, type PackingFlags } from '../engine-options.js';
import { batchView } from '../batch-view.js';

interface BatchFlags extends PackingFlags {
  results?: string;
  json?: boolean;
}

/** `nst batch`'s arguments, flags and action (main.ts names and describes the command). */
export function defineBatchCommand(command: Command): void {
  command
    .argument('<jobs>', 'the manifest: JSON Lines, or CSV with a header row')
    .option('--results <file>', 'results, one JSON line per job (default: <jobs>.results.jsonl)')
    .option('--json', 'print one JSON event per line on stdout');
  addPackingOptions(command).action(async (jobsFile: string, flags: BatchFlags) => {
    const write = (s: string) => process.stdout.write(s);
    const info = (line: string) => (flags.json ? process.stderr : process.stdout).write(line + '\n');
    const limits = packLimits(flags);
    const weights = await weightsFor(flags, info);
    const jobs = await readManifest(jobsFile, { defaults: (values) => withWeightDefaults(values, weights).values });
    const engine = await openEngine(flags, weights, info);
    try {
      info(`backend: ${engine.backend.detail}; weights: ${weights.source}`);
      const controller = new AbortController();
      const onSignal = () => {
        if (controller.signal.aborted) process.exit(130);
        controller.abort();
        info('interrupted: checkpointing the running jobs (Ctrl-C again to quit at once)');
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const results = await runBatch(
          jobs,
          { engine, limits, resultsFile: flags.results ?? defaultResultsFile(jobsFile), signal: controller.signal, notice: info },
          batchView(flags.json ? 'json' : process.stdout.isTTY ? 'tty' : 'plain', write),
        );
        if (results.some((r) => r.status === 'interrupted')) process.exitCode = 130;
        else if (results.some((r) => r.status === 'failed')) process.exitCode = 1;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    } finally {
      engine.backend.dispose();
    }
  });
}

/** The default results file of a manifest. */
export function defaultResultsFile(jobsFile: string): string {
  return path.join(path.dirname(jobsFile), `${path.basename(jobsFile)}.results.jsonl`);
}
