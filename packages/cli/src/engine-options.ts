import os from 'node:os';
import type { Command } from 'commander';
import type { PackLimits } from '@nst/batch';
import { hostMemoryAvailable, JOB_OPTIONS, memoryMargin, parseCount, type Engine, type MachineSettings } from '@nst/job';
import { chooseWeights, EMBEDDED_SOURCE } from '@nst/weights';
import { addBackendOptions, openBackendFor, type BackendFlags } from './backends.js';
import { flagFor } from './flags.js';

/** The flags of every command that renders: the weights and the backend. */
export interface EngineFlags extends BackendFlags {
  weights?: string;
  yes?: boolean;
}

/** The machine's memory budget: `--memory`, the job option's flag (render, batch) or the worker's own. */
export interface MachineFlags {
  memory?: string;
}

/** The flags of the commands that render many jobs on one engine (batch, worker): the engine, and packing. */
export interface PackingFlags extends EngineFlags, MachineFlags {
  maxBatch: string;
}

/** The machine settings the flags give: the budget of every run's memory plan (@nst/job's planRun). */
export function machineSettings(flags: MachineFlags): Pick<MachineSettings, 'memoryBytes'> {
  return { memoryBytes: flags.memory === undefined ? undefined : JOB_OPTIONS.memory.parse(flags.memory, 'memory')! * 2 ** 20 };
}

const weights = JOB_OPTIONS.weights;
const memory = JOB_OPTIONS.memory;
/** The weights flag, as the option table describes it. */
export const WEIGHTS_FLAG = `-${weights.short}, ${flagFor('weights')} <${weights.value}>`;
export const YES_FLAG = [
  '-y, --yes',
  'fetch the full VGG-19 weights when none are installed (else the built-in blocks 1-3 are used)',
] as const;

export function addPackingOptions(command: Command): Command {
  command
    .option(WEIGHTS_FLAG, `${weights.description}, for every job`)
    .option('--max-batch <n>', 'most jobs rendered together (as many as the memory budget holds)', '8');
  // batch has --memory among the jobs' options (JOB_OPTIONS.memory), the budget of the machine too; a worker takes it here.
  if (!command.options.some((o) => o.long === '--memory')) command.option(`--memory <${memory.value}>`, memory.description);
  return addBackendOptions(command).option(...YES_FLAG);
}

/** Packing: batches as large as --max-batch and the memory budget (default: what is free less a margin) allow. */
export function packLimits(flags: PackingFlags): PackLimits {
  const budget = machineSettings(flags).memoryBytes ?? hostMemoryAvailable() - memoryMargin(os.totalmem());
  return { maxBatch: parseCount(flags.maxBatch, 'maxBatch', 1), memoryBytes: Math.max(1, budget) };
}

/** The weights the flags choose (chooseWeights in @nst/weights: --weights, the installed set, --yes, the built-in set). */
export function weightsFor(flags: EngineFlags, info: (line: string) => void) {
  return chooseWeights({ path: flags.weights, fetch: flags.yes }, info);
}

/**
 * Opens the backend the flags name and loads `weights` into it: the engine
 * every job of the command runs on. `detail` hears the faster backends
 * passed over (default: `notice`); `nst backends` says the same and more.
 */
export async function openEngine(
  flags: EngineFlags & MachineFlags,
  weightSet: Engine['weights'],
  notice: (line: string) => void,
  cudaFlags: readonly string[] = [],
  detail: (line: string) => void = notice,
): Promise<Engine> {
  const backend = await openBackendFor(flags, notice, cudaFlags, detail);
  try {
    await backend.loadWeights(weightSet);
  } catch (e) {
    backend.dispose();
    throw e;
  }
  return { backend, weights: weightSet, machine: machineSettings(flags) };
}

/**
 * The weights in a few words, for the one line a render starts with: the
 * built-in set chosen because no full one is installed says so and how to
 * get the full network.
 */
export function weightsInBrief(weightSet: Engine['weights'], named: string | undefined): string {
  if (weightSet.source !== EMBEDDED_SOURCE) return weightSet.source;
  return named === undefined && !process.env.NST_WEIGHTS
    ? "no full VGG-19 installed, using the built-in blocks 1-3 (nst weights fetch: the notebook's network)"
    : 'the built-in blocks 1-3';
}

/** Where a line goes: a line the user always sees, and one only --verbose shows. */
export interface Say {
  readonly line: (text: string) => void;
  readonly detail: (text: string) => void;
}

/** Lines on stdout, or on stderr when stdout carries JSON; details only with --verbose. */
export function sayFor(flags: { json?: boolean; verbose?: boolean }): Say {
  const line = (text: string) => (flags.json ? process.stderr : process.stdout).write(text + '\n');
  return { line, detail: (text) => flags.verbose && line(text) };
}

export const VERBOSE_FLAG = [
  '--verbose',
  'also say what was chosen by default: the weights and loss layers, the backends passed over, colour profiles',
] as const;
