import { Option, type Command } from 'commander';
import type { Backend } from '@nst/core';
import { parseCount } from '@nst/job';
import { flagFor, once } from './flags.js';
import { isUserError, UserError } from '@nst/core';
import { createNativeBackend, loadNativeAddon, nativePrecisions, openCheckedCudaBackend, type NativePrecision } from '@nst/native';
import { cacheDir, randomWeights } from '@nst/weights';

export type BackendChoice = 'auto' | 'cuda' | 'cpu' | 'tfjs';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'cuda', 'cpu', 'tfjs'];

export interface BackendOptions {
  readonly precision?: NativePrecision;
  readonly gpu?: number;
}

type Opener = () => Promise<Backend>;

function openers(options: BackendOptions): Record<Exclude<BackendChoice, 'auto'>, Opener> {
  const native = (device: 'cpu' | 'cuda') => async () => {
    const loaded = loadNativeAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    return createNativeBackend(device, { precision: options.precision, gpu: options.gpu });
  };
  // TensorFlow.js takes about a second to import: only when it is the backend wanted.
  return { cuda: native('cuda'), cpu: native('cpu'), tfjs: async () => (await import('@nst/tfjs')).createTfjsBackend() };
}

/**
 * Opens the requested backend. `auto` tries cuda (only once its one-time
 * self-check on this GPU has passed, never the CPU stand-in), then cpu, then
 * tfjs, and reports each faster engine it passed over through `notice`, one
 * line each with the root cause and the fix (`cpu unavailable: native addon
 * not built: oneDNN 2.x not found: sudo apt-get install ...`); an explicit
 * choice that cannot open is a UserError saying why.
 */
export async function openBackend(choice: BackendChoice, options: BackendOptions, notice: (line: string) => void): Promise<Backend> {
  const table = openers(options);
  if (choice !== 'auto') {
    try {
      return await table[choice]();
    } catch (e) {
      throw new UserError(`${choice}: not available: ${firstLine(e)}`, { code: 'unsupported', field: 'backend' });
    }
  }
  const skipped: string[] = [];
  const auto = { ...table, cuda: () => openCheckedCudaBackend({ ...options, cacheDir: cacheDir(), checkWeights: () => randomWeights(1) }) };
  for (const name of ['cuda', 'cpu', 'tfjs'] as const) {
    try {
      const backend = await auto[name]();
      skipped.forEach((line) => notice(line));
      return backend;
    } catch (e) {
      skipped.push(`${name} unavailable: ${firstLine(e)}`);
    }
  }
  throw new UserError(`auto: no backend could start (${skipped.join('; ')})`, { code: 'unsupported', field: 'backend' });
}

/** One line per backend: whether it opens here and why not. */
export async function describeBackends(options: BackendOptions): Promise<string[]> {
  const lines: string[] = [];
  for (const [name, open] of Object.entries(openers(options))) {
    try {
      const b = await open();
      let why = '';
      if (name === 'tfjs') {
        // Say why faster TensorFlow.js engines were passed over (tfjs-node is an optional install).
        const rejected = (await (await import('@nst/tfjs')).selectTfjsBackend()).rejected;
        if (rejected.length > 0) why = ` (skipped: ${rejected.map((r) => `${r.kind}: ${whyNot(r.reason)}`).join('; ')})`;
      }
      lines.push(`${name.padEnd(5)} yes  ${b.detail}${why}`);
      b.dispose();
    } catch (e) {
      lines.push(`${name.padEnd(5)} no   ${firstLine(e)}`);
    }
  }
  return lines;
}

/** Why a TensorFlow.js engine was passed over, in one line; an optional package that is not installed says so, not how Node failed to find it. */
function whyNot(reason: string): string {
  const missing = /Cannot find (?:package|module) '(@tensorflow\/[\w-]+)'/.exec(reason);
  if (missing) return `${missing[1]} is not installed (optional: npm install ${missing[1]})`;
  return reason.split('\n')[0];
}

/** The first line of an error's message, without a leading `--backend x:` the backend may have added. */
export function firstLine(e: unknown): string {
  return (isUserError(e) ? e.detail : e instanceof Error ? e.message : String(e)).split('\n')[0];
}

/** The flags that choose and configure the backend, shared by render, batch and worker. */
export interface BackendFlags {
  backend: string;
  precision: string;
  gpu: string;
}

export function addBackendOptions(command: Command): Command {
  return command
    .addOption(once(new Option('-b, --backend <name>', 'compute backend').choices(BACKEND_CHOICES as string[]).default('auto'), 'backend'))
    .addOption(
      once(
        new Option('--precision <p>', `GPU arithmetic, read by the cuda backend only (which engine implements which: ${precisionHelp()})`)
          .choices(offeredPrecisions())
          .default('tf32'),
        'precision',
      ),
    )
    .addOption(once(new Option('--gpu <n>', 'GPU index (cuda backend only)').default('0'), 'gpu'));
}

/** The precisions some engine implements: only those are offered (an engine asked for one it lacks refuses it in one line). */
function offeredPrecisions(): string[] {
  return [...new Set(['fp32', ...nativePrecisions('cpu'), ...nativePrecisions('cuda')])];
}

/** 'fp32 (cpu, cuda), tf32 (cuda)': which engine implements which. */
function precisionHelp(): string {
  const devices = (['cpu', 'cuda'] as const).map((d) => [d, nativePrecisions(d)] as const);
  return offeredPrecisions()
    .map(
      (p) =>
        `${p} (${
          devices
            .filter(([, ps]) => ps.includes(p as NativePrecision))
            .map(([d]) => d)
            .join(', ') || 'tfjs'
        })`,
    )
    .join(', ');
}

/** Flags that only the cuda backend reads. */
const CUDA_ONLY = ['precision', 'gpu'] as const;

/** The cuda-only flags the user gave on the command line (not their defaults). */
export function cudaFlagsGiven(command: Command): string[] {
  return CUDA_ONLY.filter((name) => command.getOptionValueSource(name) === 'cli');
}

/**
 * Opens the backend the flags name. CUDA-only flags the user gave (`--gpu 1`)
 * against a backend that is not cuda: with an explicit `--backend cpu|tfjs`
 * that is a contradiction, an error; when auto chose a non-GPU backend, the
 * flag is ignored and a notice says so (the same command line then works on
 * machines with and without a GPU).
 */
export async function openBackendFor(
  flags: BackendFlags,
  notice: (line: string) => void,
  cudaFlags: readonly string[] = [],
  passedOver: (line: string) => void = notice,
): Promise<Backend> {
  const choice = flags.backend as BackendChoice;
  if (cudaFlags.length > 0 && choice !== 'auto' && choice !== 'cuda')
    throw new UserError(
      `${cudaFlags.map(flagFor).join(' and ')} ${cudaFlags.length > 1 ? 'apply' : 'applies'} to the cuda backend only, not ${choice}`,
      {
        code: 'conflict',
        field: 'backend',
      },
    );
  const gpu = parseCount(flags.gpu, 'gpu');
  const backend = await openBackend(choice, { precision: flags.precision as NativePrecision, gpu }, passedOver);
  if (backend.name !== 'cuda' && cudaFlags.length > 0)
    notice(`note: ${cudaFlags.map(flagFor).join(' and ')} ignored: the ${backend.name} backend runs without a GPU`);
  return backend;
}
