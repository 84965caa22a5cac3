import type { Command } from 'commander';
import type { PackLimits } from '@nst/batch';
import { parseCount } from '@nst/job';
import { addBackendOptions, type BackendFlags } from './backends.js';

/** The flags of the commands that render many jobs on one engine (batch, worker): weights, packing, backend. */
export interface EngineFlags extends BackendFlags {
  weights?: string;
  yes?: boolean;
  maxBatch: string;
  memory: string;
}

export function addEngineOptions(command: Command): Command {
  command
    .option('-w, --weights <path|random:SEED>', 'VGG-19 weights for every job (default: $NST_WEIGHTS, else the installed set)')
    .option('--max-batch <n>', 'most jobs rendered together', '8')
    .option('--memory <MiB>', "memory a batch may use, by the backend's own estimate (the one that refuses a render)", '4096');
  return addBackendOptions(command).option(
    '-y, --yes',
    'fetch the full VGG-19 weights when none are installed (else the built-in blocks 1-3 are used)',
  );
}

export function packLimits(flags: EngineFlags): PackLimits {
  return { maxBatch: parseCount(flags.maxBatch, 'maxBatch', 1), memoryBytes: parseCount(flags.memory, 'memory', 1) * 2 ** 20 };
}
