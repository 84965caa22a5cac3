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
  /** One the engine implements, or auto (each engine's own choice: cuda tf32; cpu fp32). */
  readonly precision?: NativePrecision | 'auto';
  readonly gpu?: number;
}

type Opener = () => Promise<Backend>;

function openers(options: BackendOptions, lenient = false): Record<Exclude<BackendChoice, 'auto'>, Opener> {
  const native = (device: 'cpu' | 'cuda') => async () => {
    const loaded = loadNativeAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    return createNativeBackend(device, { precision: precisionFor(device, options.precision, lenient), gpu: options.gpu });
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
  const table = openers(options, choice === 'auto');
  if (choice !== 'auto') {
    try {
      return await table[choice]();
    } catch (e) {
      // A precision the engine refuses is the precision's error (the engine runs, but not so).
      if (isUserError(e) && e.field === 'precision') throw e;
      throw new UserError(`${choice}: not available: ${firstLine(e)}`, { code: 'unsupported', field: 'backend' });
    }
  }
  const skipped: string[] = [];
  const cudaPrecision = precisionFor('cuda', options.precision, true);
  const auto = {
    ...table,
    cuda: () =>
      openCheckedCudaBackend({ ...options, precision: cudaPrecision, cacheDir: cacheDir(), checkWeights: () => randomWeights(1) }),
  };
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
        new Option(
          '--precision <p>',
          `arithmetic of the native engines' convolutions (which engine implements which: ${precisionHelp()}); auto: cuda tf32, cpu fp32 (cpu bf16 needs native bf16: AMX or AVX512-BF16)`,
        )
          .choices(['auto', ...offeredPrecisions()])
          .default('auto'),
        'precision',
      ),
    )
    .addOption(once(new Option('--gpu <n>', 'GPU index (cuda backend only)').default('0'), 'gpu'));
}

/** The precisions some engine implements: only those are offered (an engine asked for one it lacks refuses it in one line). */
function offeredPrecisions(): string[] {
  return [...new Set(['fp32', ...nativePrecisions('cpu'), ...nativePrecisions('cuda')])];
}

/** 'fp32 (cpu, cuda), bf16 (cpu), tf32 (cuda)': which engine implements which. */
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

/**
 * The precision to ask the engine of `device` for: the one given, or (when
 * `lenient`, for --backend auto) the engine's own choice where it does not
 * implement the one given (the caller says it was ignored).
 */
function precisionFor(device: 'cpu' | 'cuda', precision: BackendOptions['precision'], lenient: boolean): BackendOptions['precision'] {
  if (precision === undefined) return 'auto';
  return lenient && precision !== 'auto' && !nativePrecisions(device).includes(precision) ? 'auto' : precision;
}

/** The engine flags and the backends that read them: --precision the native engines (each the precisions it implements), --gpu cuda. */
const ENGINE_FLAGS = { precision: ['cuda', 'cpu'], gpu: ['cuda'] } as const satisfies Record<string, readonly BackendChoice[]>;
type EngineFlag = keyof typeof ENGINE_FLAGS;

/** The engine flags the user gave on the command line (not their defaults). */
export function cudaFlagsGiven(command: Command): string[] {
  return (Object.keys(ENGINE_FLAGS) as EngineFlag[]).filter((name) => command.getOptionValueSource(name) === 'cli');
}

/**
 * Opens the backend the flags name. Engine flags the user gave against a
 * backend that does not read them (`--gpu 1` on cpu, `--precision` on tfjs):
 * with an explicit `--backend` that is a contradiction, an error; when auto
 * chose that backend, the flag is ignored and a notice says so, and so is a
 * precision the chosen engine does not implement (`--precision bf16` on
 * cuda, `tf32` on cpu: the engine's own choice runs), so that one command
 * line works on machines with and without a GPU.
 */
export async function openBackendFor(
  flags: BackendFlags,
  notice: (line: string) => void,
  cudaFlags: readonly string[] = [],
  passedOver: (line: string) => void = notice,
): Promise<Backend> {
  const choice = flags.backend as BackendChoice;
  const given = cudaFlags.filter((f): f is EngineFlag => f in ENGINE_FLAGS);
  const unread = (backend: string) => given.filter((f) => !(ENGINE_FLAGS[f] as readonly string[]).includes(backend));
  const refused = choice === 'auto' ? [] : unread(choice);
  if (refused.length > 0)
    throw new UserError(
      `${refused.map((f) => `${flagFor(f)} applies to the ${ENGINE_FLAGS[f].join(' and ')} backend${ENGINE_FLAGS[f].length > 1 ? 's' : ''} only`).join(', ')}, not ${choice}`,
      { code: 'conflict', field: 'backend' },
    );
  const gpu = parseCount(flags.gpu, 'gpu');
  const precision = flags.precision as NativePrecision | 'auto';
  const backend = await openBackend(choice, { precision, gpu }, passedOver);
  const ignored = unread(backend.name);
  if (ignored.length > 0)
    notice(
      `note: ${ignored.map(flagFor).join(' and ')} ignored: the ${backend.name} backend runs without a GPU${ignored.includes('precision') ? ', in fp32' : ''}`,
    );
  else if (given.includes('precision') && precision !== 'auto') {
    const implemented = nativePrecisions(backend.name as 'cpu' | 'cuda');
    if (!implemented.includes(precision))
      notice(
        `note: --precision ${precision} ignored: the ${backend.name} engine implements ${implemented.join(', ')}; it runs its own choice (auto)`,
      );
  }
  return backend;
}
