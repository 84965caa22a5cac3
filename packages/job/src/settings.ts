import path from 'node:path';
import { UserError, type LossValues, type WeightSet } from '@nst/core';
import { fileDigest, weightsIdentity, type InputDigests } from './fingerprint.js';
import { readImageSettingsText } from './image-file.js';
import {
  formatOption,
  JOB_FIELDS,
  JOB_OPTIONS,
  namesFile,
  omittedFromSettings,
  type JobConfig,
  type JobOptionValues,
  type OptionValue,
} from './options.js';
import type { Size } from './schedule.js';
import { NST_VERSION } from './version.js';

/**
 * What a result records of how it was made, in the file itself (PNG iTXt,
 * XMP elsewhere: image-file.ts): every option that changes the picture, as
 * text its parser reads back to the same value (paths absolute, or the names
 * the user gave them where the files are a worker's copies), each input
 * file with its SHA-256, the weights' identity, the job's fingerprint (the
 * 'result' kind, which `nst batch` compares to decide whether a row
 * changed), and the nst version and backend. `nst info` prints it and
 * `nst render --from` renders it again.
 */
export interface ResultSettings {
  readonly nst: string;
  /** Job options by field (camelCase), those that change the picture. */
  readonly options: Readonly<Record<string, OptionValue>>;
  readonly inputs: readonly { readonly field: string; readonly file: string; readonly sha256: string }[];
  readonly weights: { readonly source: string; readonly format: string; readonly identity: string };
  readonly fingerprint: string;
  /** The output size, WxH. */
  readonly size: string;
  /** The backend that rendered it (its description). */
  readonly backend?: string;
}

/** What one file adds to its job's settings: whether it is the result, and how far the optimisation had got. */
export interface FileState {
  /** final: the result; partial: an interrupted run's image (`--resume` continues it); snapshot: a --save-every image. */
  readonly state: 'final' | 'partial' | 'snapshot';
  /** Iterations done at the scale written (the last scale, but for a run interrupted earlier). */
  readonly iteration: number;
  readonly iterations: number;
  /** The loss of the image written, when known (final and partial images). */
  readonly losses?: LossValues;
}

export type FileSettings = ResultSettings & FileState;

/** A job's settings, from the values prepareJob has (the inputs' digests are those of its fingerprint). */
export function resultSettings(
  job: JobConfig,
  weights: Pick<WeightSet, 'sha256' | 'source' | 'format'>,
  size: Size,
  fingerprint: string,
  digests: InputDigests,
  inputNames?: ReadonlyMap<string, string>,
): ResultSettings {
  const options: Record<string, OptionValue> = {};
  const inputs: { field: string; file: string; sha256: string }[] = [];
  for (const field of JOB_FIELDS) {
    const spec = JOB_OPTIONS[field];
    const value = job[field];
    if (spec.result === false || value === undefined || omittedFromSettings(field, value)) continue;
    if (spec.paths && (Array.isArray(value) || namesFile(field, value as string))) {
      // A list keeps its places that name no file (a mask list's `none`) as they are.
      const given: string[] = Array.isArray(value) ? value : [value];
      const files = given.map((f) => (namesFile(field, f) ? (inputNames?.get(f) ?? path.resolve(f)) : f));
      files.forEach((file, k) => {
        if (namesFile(field, given[k])) inputs.push({ field, file, sha256: digests[field]?.[k] ?? '' });
      });
      options[field] = Array.isArray(value) ? files : files[0];
    } else options[field] = formatOption(field, value);
  }
  return {
    nst: NST_VERSION,
    options,
    inputs,
    weights: { source: weights.source, format: weights.format, identity: weightsIdentity(weights) },
    fingerprint,
    size: `${size.width}x${size.height}`,
  };
}

/** The settings a file carries, or undefined when it carries none (any other image, or one from before nst recorded them). */
export async function readResultSettings(file: string, field: string): Promise<FileSettings | undefined> {
  const text = await readImageSettingsText(file, field);
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UserError(`the nst settings in '${file}' are not JSON: the file was damaged or edited`, { code: 'unreadable', field });
  }
  const s = parsed as Partial<FileSettings>;
  const ok =
    typeof s === 'object' &&
    s !== null &&
    typeof s.nst === 'string' &&
    typeof s.fingerprint === 'string' &&
    typeof s.options === 'object' &&
    s.options !== null &&
    Array.isArray(s.inputs) &&
    typeof s.weights?.identity === 'string';
  if (!ok)
    throw new UserError(`the nst settings in '${file}' are incomplete: the file was damaged or edited`, { code: 'unreadable', field });
  return s as FileSettings;
}

/**
 * The option values to render `settings` again: its options, those named in
 * `given` left out (the user's own win). Each input file it names must still
 * hold the bytes it was made from, unless the user names another.
 */
export async function valuesFrom(settings: ResultSettings, given: JobOptionValues, source: string): Promise<JobOptionValues> {
  const values: Record<string, OptionValue> = {};
  for (const [field, value] of Object.entries(settings.options)) {
    if (!(field in JOB_OPTIONS))
      throw new UserError(`'${source}' was made with the option '${field}', which this nst (${NST_VERSION}) does not know`, {
        code: 'unsupported',
        field: 'from',
      });
    if (given[field] === undefined) values[field] = value;
  }
  for (const input of settings.inputs) {
    if (given[input.field] !== undefined) continue;
    const now = await fileDigest(input.file, 'from').catch(() => undefined);
    if (now === undefined)
      throw new UserError(`'${source}' was made from '${input.file}', which cannot be read now`, { code: 'not-found', field: 'from' });
    if (now !== input.sha256)
      throw new UserError(`'${input.file}' has changed since '${source}' was made from it (its SHA-256 differs)`, {
        code: 'conflict',
        field: 'from',
      });
  }
  return values;
}

/** Refuses weights other than those `settings` were made with (one line, naming both). */
export function checkSameWeights(settings: ResultSettings, weights: Pick<WeightSet, 'sha256' | 'source'>, source: string): void {
  const identity = weightsIdentity(weights);
  if (identity === settings.weights.identity) return;
  const short = (id: string) => (/^[0-9a-f]{64}$/.test(id) ? `SHA-256 ${id.slice(0, 12)}...` : id);
  throw new UserError(
    `'${source}' was made with the weights ${settings.weights.source} (${short(settings.weights.identity)}), not ${weights.source} (${short(identity)})`,
    { code: 'conflict', field: 'weights' },
  );
}

/**
 * The job fields whose values differ between the settings a file was made
 * with and a job's now (`contents`: the same file names, other bytes), the
 * weights among them; the output size when nothing else explains it.
 */
export function changedFields(before: ResultSettings, now: ResultSettings): { field: string; contents?: true }[] {
  const changed: { field: string; contents?: true }[] = [];
  const digests = (s: ResultSettings, field: string) => JSON.stringify(s.inputs.filter((i) => i.field === field).map((i) => i.sha256));
  for (const field of new Set([...Object.keys(before.options), ...Object.keys(now.options)])) {
    if (JSON.stringify(before.options[field]) !== JSON.stringify(now.options[field])) changed.push({ field });
    else if (digests(before, field) !== digests(now, field)) changed.push({ field, contents: true });
  }
  if (before.weights.identity !== now.weights.identity) changed.push({ field: 'weights' });
  if (before.size !== now.size && changed.length === 0) changed.push({ field: 'size' });
  return changed;
}
