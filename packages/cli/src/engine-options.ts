import type { Command } from 'commander';
import type { PackLimits } from '@nst/batch';
import { JOB_OPTIONS, parseCount, type Engine } from '@nst/job';
import { chooseWeights } from '@nst/weights';
import { addBackendOptions, openBackendFor, type BackendFlags } from './backends.js';
import { flagFor } from './flags.js';

/** The flags of every command that renders: the weights and the backend. */
export interface EngineFlags extends BackendFlags {
  weights?: string;
  yes?: boolean;
}

/** The flags of the commands that render many jobs on one engine (batch, worker): the engine, and packing. */
export interface PackingFlags extends EngineFlags {
  maxBatch: string;
  memory: string;
}

const weights = JOB_OPTIONS.weights;
/** The weights flag, as the option table describes it. */
export const WEIGHTS_FLAG = `-${weights.short}, ${flagFor('weights')} <${weights.value}>`;
export const YES_FLAG = [
  '-y, --yes',
  'fetch the full VGG-19 weights when none are installed (else the built-in blocks 1-3 are used)',
] as const;

export function addPackingOptions(command: Command): Command {
  command
    .option(WEIGHTS_FLAG, `${weights.description}, for every job`)
    .option('--max-batch <n>', 'most jobs rendered together', '8')
    .option('--memory <MiB>', "memory a batch may use, by the backend's own estimate (the one that refuses a render)", '4096');
  return addBackendOptions(command).option(...YES_FLAG);
}

export function packLimits(flags: PackingFlags): PackLimits {
  return { maxBatch: parseCount(flags.maxBatch, 'maxBatch', 1), memoryBytes: parseCount(flags.memory, 'memory', 1) * 2 ** 20 };
}

/** The weights the flags choose (chooseWeights in @nst/weights: --weights, the installed set, --yes, the built-in set). */
export function weightsFor(flags: EngineFlags, info: (line: string) => void) {
  return chooseWeights({ path: flags.weights, fetch: flags.yes }, info);
}

/** Opens the backend the flags name and loads `weights` into it: the engine every job of the command runs on. */
export async function openEngine(
  flags: EngineFlags,
  weightSet: Engine['weights'],
  notice: (line: string) => void,
  cudaFlags: readonly string[] = [],
): Promise<Engine> {
  const backend = await openBackendFor(flags, notice, cudaFlags);
  try {
    await backend.loadWeights(weightSet);
  } catch (e) {
    backend.dispose();
    throw e;
  }
  return { backend, weights: weightSet };
}
